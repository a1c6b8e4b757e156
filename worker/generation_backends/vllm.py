"""'vllm': vLLM in the worker's own process (extra `rankloop[vllm]`, CUDA only).

One engine per base model stays loaded for the worker's life; each version's LoRA adapter is
hot-loaded per request (`LoRARequest`), so sampling the previous version, or the next round's,
needs no reload. Rows are fitted by the worker and sent as token ids with n and the batch's
seed, as for 'openai'; vLLM returns token ids, so answers end by the very rule of 'hf'
(`end_answer`). A lineage with merged adapters (started from SFT) needs a merged base the
engine does not have: use 'hf', or 'openai' serving merged weights.
"""

from __future__ import annotations

from typing import Any

from worker.generation_backends.base import BackendUnavailable, VersionRef, row_groups
from worker.training.generation import (
    GeneratedSample,
    GenerationSettings,
    end_answer,
    end_token_ids,
    fitted_sample,
    stop_strings_for,
)
from worker.training.prompts import Prompt, fit_prompt, no_room_message, prompt_budget

GPU_MEMORY_UTILIZATION = 0.6
"""Share of the GPU vLLM may reserve: the rest stays for the models a stage loads beside it."""
MAX_LORA_RANK = 64
_ENGINES: dict[tuple[str, bool], Any] = {}


def _engine(base: str, *, trust_remote_code: bool) -> Any:
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable(
            "The project's generation backend is 'vllm', which runs on CUDA only, and this "
            "worker has no GPU — use 'hf', or 'openai' with a vLLM server"
        )
    try:
        from vllm import LLM
    except ImportError as exc:
        raise BackendUnavailable(
            "The project's generation backend is 'vllm' but vllm is not installed on this "
            "worker — install rankloop[vllm] on the GPU workers"
        ) from exc
    key = (base, trust_remote_code)
    if key not in _ENGINES:
        _ENGINES[key] = LLM(
            model=base,
            trust_remote_code=trust_remote_code,
            enable_lora=True,
            max_lora_rank=MAX_LORA_RANK,
            gpu_memory_utilization=GPU_MEMORY_UTILIZATION,
        )
    return _ENGINES[key]


class VLLMBackend:
    """An engine and the version whose adapter each request names (`use`)."""

    def __init__(self, version: VersionRef) -> None:
        from worker.policies import resolve_base_model

        if version.merged_adapter_uris:
            raise BackendUnavailable(
                "The 'vllm' backend cannot stack merged adapters yet (this lineage started "
                "from SFT) — use 'hf', or 'openai' with a server holding the merged weights"
            )
        base = resolve_base_model(version.base_model)
        self.llm = _engine(base, trust_remote_code=version.trust_remote_code)
        self.tokenizer = self.llm.get_tokenizer()
        self.context = int(self.llm.llm_engine.model_config.max_model_len)
        self.lora: Any = None
        self.use(version)

    def use(self, version: VersionRef, adapter_dir: str | None = None) -> None:
        """Name `version`'s adapter (or `adapter_dir`, e.g. an unregistered candidate's) in
        every request from now on; None samples the base."""
        from vllm.lora.request import LoRARequest

        from app.artifacts import get_store

        if adapter_dir is None and version.adapter_uri is not None:
            adapter_dir = str(get_store().local_dir(version.adapter_uri))
        self.lora = (
            LoRARequest(version.adapter_name, version.id, adapter_dir) if adapter_dir else None
        )

    def budget(self, settings: GenerationSettings) -> int | None:
        budget = prompt_budget(self.context, settings.max_new_tokens)
        if budget is not None and budget < 1:
            raise ValueError(no_room_message(self.context, settings.max_new_tokens))
        return budget

    def generate(
        self, prompts: list[Prompt], settings: GenerationSettings, *, seed: int
    ) -> list[GeneratedSample]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        end_ids = end_token_ids(self.tokenizer)
        stops = stop_strings_for(self.tokenizer, settings.stop_strings)
        budget = self.budget(settings)
        groups = row_groups(prompts)
        fitted = [fit_prompt(self.tokenizer, prompts[start], budget) for start, _ in groups]
        params = [
            SamplingParams(
                n=count,
                seed=seed,
                temperature=settings.temperature,
                top_p=settings.top_p,
                top_k=settings.top_k or -1,
                repetition_penalty=settings.repetition_penalty,
                max_tokens=settings.max_new_tokens,
                stop=stops or None,
                stop_token_ids=end_ids,
                include_stop_str_in_output=True,  # `end_answer` cuts where 'hf' would
            )
            for _, count in groups
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=f.ids) for f in fitted],
            params,
            lora_request=self.lora,
            use_tqdm=False,
        )
        samples: list[GeneratedSample] = []
        for f, (start, _), output in zip(fitted, groups, outputs, strict=True):
            for row, completion in enumerate(sorted(output.outputs, key=lambda c: c.index)):
                answer = end_answer(
                    self.tokenizer, list(completion.token_ids), end_ids=end_ids, stops=stops
                )
                samples.append(
                    fitted_sample(
                        f,
                        answer.text,
                        answer.token_ids,
                        finished=answer.finished or completion.finish_reason == "stop",
                        seed=seed,
                        index=start + row,
                    )
                )
        return samples

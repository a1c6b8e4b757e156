"""'openai': any OpenAI-compatible /v1/completions server (vLLM, SGLang, TGI) writes the texts.

Prompts are rendered and fitted by the worker exactly as for 'hf' (chat template,
`fit_prompt`) and sent as token ids, so the server reads the very tokens `generate` would.
One request per run of a prompt's rows in a batch: n = those rows, seed = the batch's seed
(`base.generate_samples`); a batch's requests go out together, for the server to batch.
Stop strings and the template's end-of-turn tokens are sent too, and the returned text is
cut again by the same rule (`cut_at_stop`), in case a server ignores them.

The version's LoRA adapter is named per request ("rankloop-v{N}", the name to give it in
the server's `--lora-modules`) when the server lists it, or when it loads it on request (vLLM
with VLLM_ALLOW_RUNTIME_LORA_UPDATING, reading the artifact store at the worker's path, as
the compose file's vllm service does); else the project's generation model, which must then
serve the version's merged weights. Timeouts, dropped connections,
429 and 5xx are retried after RETRY_DELAYS_S; then `BackendUnavailable` fails the job with
one line. The key is read from the environment variable the project names, sent only as a
bearer header, and never logged or stored.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from worker.generation_backends.base import (
    BackendConfig,
    BackendUnavailable,
    VersionRef,
    row_groups,
)
from worker.training.generation import (
    GeneratedSample,
    GenerationSettings,
    cut_at_stop,
    end_token_ids,
    fitted_sample,
    stop_strings_for,
)
from worker.training.prompts import (
    Prompt,
    fit_prompt,
    no_room_message,
    prompt_budget,
    token_limit,
)

logger = logging.getLogger(__name__)

RETRY_DELAYS_S: tuple[float, ...] = (1.0, 4.0, 15.0)
"""Waits before each retry of a failed request (a restarting server takes seconds)."""
REQUEST_TIMEOUT_S = 600.0
"""Longest wait for one request's answer: n long samples from a busy server take minutes."""
_PROMPT_ERRORS = (400, 413, 422)
"""Statuses that blame the request (a prompt too long for the server): that prompt fails."""


class GenerationRequestError(ValueError):
    """The server refused one request (HTTP 400/413/422): the prompt, not the server."""


def _one_line(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit]


class OpenAIBackend:
    """Completions from a server; `tokenizer` and `context` are the policy's."""

    def __init__(
        self,
        *,
        base_url: str,
        model_name: str,
        tokenizer: Any,
        context: int | None,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.tokenizer = tokenizer
        self.context = context
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0)
        )

    def budget(self, settings: GenerationSettings) -> int | None:
        budget = prompt_budget(self.context, settings.max_new_tokens)
        if self.context is not None and budget is not None and budget < 1:
            raise ValueError(no_room_message(self.context, settings.max_new_tokens))
        return budget

    def served_models(self) -> list[str] | None:
        """The names GET /models lists, or None when the server does not say."""
        try:
            response = self.client.get(f"{self.base_url}/models", timeout=10.0)
            response.raise_for_status()
            return [str(m["id"]) for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def load_adapter(self, version: VersionRef) -> bool:
        """Ask the server to load `version`'s adapter from the artifact store (vLLM's
        /load_lora_adapter); False when it cannot (no such endpoint, path not readable)."""
        from app.artifacts import get_store

        assert version.adapter_uri is not None
        path = str(get_store().local_dir(version.adapter_uri))
        body = {"lora_name": version.adapter_name, "lora_path": path}
        try:
            response = self.client.post(f"{self.base_url}/load_lora_adapter", json=body)
        except httpx.HTTPError:
            return False
        if response.status_code >= 400:
            logger.info(
                "generation server %s did not load adapter %s: HTTP %s %s",
                self.base_url,
                version.adapter_name,
                response.status_code,
                _one_line(response.text),
            )
            return False
        return True

    def generate(
        self, prompts: list[Prompt], settings: GenerationSettings, *, seed: int
    ) -> list[GeneratedSample]:
        end_ids = end_token_ids(self.tokenizer)
        stops = stop_strings_for(self.tokenizer, settings.stop_strings)
        budget = self.budget(settings)
        groups = row_groups(prompts)
        fitted = [fit_prompt(self.tokenizer, prompts[start], budget) for start, _ in groups]
        bodies = [
            self._body(f.ids, count, settings, seed=seed, stops=stops, end_ids=end_ids)
            for f, (_, count) in zip(fitted, groups, strict=True)
        ]
        with ThreadPoolExecutor(max_workers=min(len(bodies), 32)) as pool:
            answers = list(pool.map(self._post, bodies))
        samples: list[GeneratedSample] = []
        for f, (start, count), answer in zip(fitted, groups, answers, strict=True):
            choices = sorted(answer.get("choices", []), key=lambda c: int(c.get("index", 0)))
            if len(choices) != count:
                raise BackendUnavailable(
                    f"The generation server returned {len(choices)} completions where {count} "
                    "were asked for (n) — check that it supports n > 1"
                )
            for row, choice in enumerate(choices):
                text = cut_at_stop(str(choice.get("text") or ""), stops)
                finished = choice.get("finish_reason") == "stop"
                token_ids = self.tokenizer.encode(text, add_special_tokens=False)
                if finished:
                    token_ids.append(end_ids[0])  # the server's ending, as `end_answer` keeps it
                samples.append(
                    fitted_sample(
                        f, text.strip(), token_ids, finished=finished, seed=seed, index=start + row
                    )
                )
        return samples

    def _body(
        self,
        ids: list[int],
        count: int,
        settings: GenerationSettings,
        *,
        seed: int,
        stops: list[str],
        end_ids: list[int],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "prompt": ids,
            "n": count,
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "seed": seed,
        }
        if stops:
            body["stop"] = stops
        # Extensions (vLLM, SGLang), sent only when they change something.
        if len(end_ids) > 1:
            body["stop_token_ids"] = end_ids[1:]
        if settings.top_k:
            body["top_k"] = settings.top_k
        if settings.repetition_penalty != 1.0:
            body["repetition_penalty"] = settings.repetition_penalty
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request, retried on timeouts, dropped connections, 429 and 5xx."""
        url = f"{self.base_url}/completions"
        problem = ""
        for delay in (*RETRY_DELAYS_S, None):
            try:
                response = self.client.post(url, json=body)
            except httpx.TimeoutException:
                problem = f"no answer within {REQUEST_TIMEOUT_S:g} s"
            except httpx.TransportError as exc:
                problem = _one_line(f"{type(exc).__name__}: {exc}")
            else:
                if response.status_code < 400:
                    return dict(response.json())
                reason = f"HTTP {response.status_code}: {_one_line(response.text)}"
                if response.status_code in _PROMPT_ERRORS:
                    raise GenerationRequestError(
                        f"The generation server refused a prompt: {reason}"
                    )
                if response.status_code < 500 and response.status_code != 429:
                    raise BackendUnavailable(
                        f"The generation server at {self.base_url} refused the request ({reason}) "
                        "— check the project's generation model and the key's variable"
                    )
                problem = reason
            if delay is None:
                break
            logger.warning(
                "generation server %s: %s; retrying in %g s", self.base_url, problem, delay
            )
            time.sleep(delay)
        raise BackendUnavailable(
            f"The generation server at {self.base_url} failed {len(RETRY_DELAYS_S) + 1} tries "
            f"({problem}) — check that it is up and serves '{self.model_name}'"
        )

    def close(self) -> None:
        self.client.close()


def _api_key(name: str | None) -> str | None:
    if not name:
        return None
    key = os.environ.get(name)
    if not key:
        raise BackendUnavailable(
            f"The environment variable {name}, named for the generation server's key, is not "
            "set on this worker"
        )
    return key


def openai_backend(config: BackendConfig, version: VersionRef) -> OpenAIBackend:
    """The backend for `version`: the policy's tokenizer and context are read locally
    (tokenizer and config files only, no weights); the served name is chosen as the module
    docstring says."""
    from transformers import AutoConfig

    from app.config import get_settings
    from worker.policies import resolve_base_model
    from worker.training.models import load_tokenizer

    if not config.base_url:
        raise BackendUnavailable(
            "The project's generation backend is 'openai' but it has no server URL — set it in "
            "the project settings"
        )
    key = _api_key(config.api_key_env)
    base = resolve_base_model(version.base_model)
    token = get_settings().effective_hf_token()
    tokenizer = load_tokenizer(base, trust_remote_code=version.trust_remote_code, token=token)
    model_config = AutoConfig.from_pretrained(
        base, trust_remote_code=version.trust_remote_code, token=token
    )
    backend = OpenAIBackend(
        base_url=config.base_url,
        model_name=config.model or version.base_model,
        tokenizer=tokenizer,
        context=token_limit(tokenizer, model=model_config),
        api_key=key,
    )
    served = backend.served_models()
    if (
        version.adapter_uri is not None
        and not version.merged_adapter_uris
        and served is not None
        and version.adapter_name not in served
        and backend.load_adapter(version)
    ):
        served.append(version.adapter_name)
    backend.model_name = served_name(config, version, served)
    return backend


def served_name(config: BackendConfig, version: VersionRef, served: list[str] | None) -> str:
    """The request's `model`: the version's adapter when the server lists it (or cannot
    say), else the project's generation model (merged weights), else the base model's name
    for a version without an adapter."""
    if version.merged_adapter_uris:  # its adapter applies on a base the server does not hold
        if config.model:
            return config.model
        raise BackendUnavailable(
            f"Policy version {version.number} builds on merged adapters (its lineage started "
            "from SFT), which a server's base model lacks — export its merged weights, serve "
            "them and set the project's generation model to their name"
        )
    if version.adapter_uri is None:
        return config.model or version.base_model
    if served is None or version.adapter_name in served:
        return version.adapter_name
    if config.model:
        logger.warning(
            "generation server does not list adapter %s; sampling %s (merged weights)",
            version.adapter_name,
            config.model,
        )
        return config.model
    raise BackendUnavailable(
        f"The generation server does not serve policy version {version.number}'s adapter as "
        f"'{version.adapter_name}' (it lists {', '.join(served[:5]) or 'nothing'}) — load it "
        f"there (vLLM: --lora-modules {version.adapter_name}=DIR), or set the project's "
        "generation model to one serving the version's merged weights"
    )

"""Sampling several responses per prompt, reproducibly, for annotators and for PPO rollouts.

Rows are laid out prompt-major ((p0, s0), (p0, s1), ..., (p1, s0), ...) and cut into
batches of `batch_size` rows. Batch b is sampled under its own seed
`batch_seed(seed, b)`, which every sample records together with its row `index` in the
batch: calling `generate_batch` on the same rows with that seed gives the same texts on
the same device. Prompts are LEFT-padded (the new tokens must follow the prompt directly)
with an attention mask; `generate` derives position ids from that mask. A prompt that does
not fit the model's context with `max_new_tokens` after it loses its oldest turns, then is
left-truncated behind a marker (`prompts.fit_prompt`, the rule of every stage), never passed
on to index past the position embeddings.

A response ends where the assistant's turn ends: at EOS, at the chat template's end-of-turn
token, or at a stop string (by default the template's next-turn header, such as a new
"User:" line), so nobody ranks, scores or trains on a turn the model invented. `end_answer`
is that rule, shared by annotation samples, PPO rollouts and the gate.

Every distribution-changing option is passed explicitly, because `generate` otherwise
fills gaps from the checkpoint's generation_config and from library defaults (top_k=50):
training notes §PPO 3.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from jinja2 import TemplateError
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from worker.training.models import forked_rng, format_prompt
from worker.training.prompts import (
    FittedPrompt,
    Prompt,
    fit_prompt,
    no_room_message,
    prompt_budget,
    token_limit,
)


@dataclass
class GenerationSettings:
    """How to sample. The defaults are pure sampling, the setting PPO rollouts need."""

    max_new_tokens: int = 128
    """Upper bound on generated tokens; a sample that hits it is `finished=False`."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding (no randomness, seeds irrelevant)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 keeps the whole distribution."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 disables (transformers would default to 50)."""
    repetition_penalty: float = 1.0
    """>1 discourages repeats. For annotator samples only: it breaks PPO's log-probs."""
    stop_strings: list[str] | None = None
    """Texts that end the answer (cut off, not shown); None derives them from the chat
    template (`stop_strings_for`), [] stops at EOS and the end-of-turn token only."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.stop_strings is not None and not all(self.stop_strings):
            raise ValueError("stop strings must not be empty")

    @property
    def is_pure_sampling(self) -> bool:
        """True when samples follow the model's distribution (what PPO log-probs assume)."""
        return (
            self.temperature > 0
            and self.top_p == 1.0
            and self.top_k == 0
            and self.repetition_penalty == 1.0
        )


@dataclass
class GeneratedSample:
    """One response. `seed` and `index` identify the batch and row that produced it."""

    text: str
    """Decoded response before the first EOS or stop string, special tokens removed,
    whitespace-stripped."""
    token_ids: list[int]
    """Generated token ids up to and including the one that ended the answer (EOS, the
    end-of-turn token, or the token completing a stop string); no padding."""
    n_tokens: int
    """len(token_ids): tokens the model produced, the ending included when it stopped."""
    finished: bool
    """True when the answer ended (EOS, end-of-turn token, stop string) within
    max_new_tokens; False when it was cut off there."""
    seed: int
    """Seed of the batch this sample was drawn in."""
    index: int
    """Row of this sample inside its batch."""
    prompt_ids: list[int] | None = None
    """The prompt's ids as the model read them (shortened when it did not fit)."""
    prompt_dropped: int = 0
    """Messages dropped from the start of the prompt's conversation to fit the context."""
    prompt_truncated: bool = False
    """The prompt was left-truncated behind the marker to fit the context."""


def batch_seed(seed: int, batch: int) -> int:
    """Seed of batch number `batch` of a run seeded with `seed` (distinct per batch)."""
    return (seed * 1_000_003 + batch) % (2**63)


def _pad_left(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, P)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, P)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask


def _sampling_kwargs(settings: GenerationSettings) -> dict[str, float | int]:
    """Warper options for sampling; greedy decoding takes none (passing them only warns)."""
    if settings.temperature == 0:
        return {}
    return {
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "top_k": settings.top_k,
        "typical_p": 1.0,
        "min_p": 0.0,
        "epsilon_cutoff": 0.0,
        "eta_cutoff": 0.0,
    }


# End of the answer -----------------------------------------------------------------------

_TURN_MARKERS = ("RANKLOOPREPLY", "RANKLOOPNEXT")


def _turn_separators(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """What the chat template writes between an assistant reply and a following user or
    assistant turn: "\\nUser: " for the tiny model, "<|im_end|>\\n<|im_start|>user\\n" for
    ChatML."""
    reply, following = _TURN_MARKERS
    separators = []
    for role in ("user", "assistant"):
        messages = [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": reply},
            {"role": role, "content": following},
        ]
        try:
            text = format_prompt(tokenizer, messages)
        except TemplateError:  # a template that insists on alternating roles
            continue
        start = text.find(reply)
        end = text.find(following, start)
        if start >= 0 and end >= 0:
            separators.append(text[start + len(reply) : end])
    return separators


def _turn_end(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[str]]:
    """(end-of-turn token ids, next-turn stop strings) the chat template implies.

    A separator that holds a special token ends the turn with that token (decoding drops
    special tokens, so no text would show it); a plain one is a stop string, from its first
    line break on ("\\n\\n### Instruction: " stops at "\\n### Instruction:").
    """
    specials = {t.content for t in tokenizer.added_tokens_decoder.values()}
    specials |= set(tokenizer.all_special_tokens)
    token_ids: list[int] = []
    stops: list[str] = []
    for separator in _turn_separators(tokenizer):
        found = [(separator.find(t), t) for t in specials if t and t in separator]
        if found:
            token_id = tokenizer.convert_tokens_to_ids(min(found)[1])
            if isinstance(token_id, int) and token_id not in token_ids:
                token_ids.append(token_id)
            continue
        header = separator.strip()
        if not header:
            continue  # turns split by whitespace alone: nothing marks a new one
        lead = separator[: len(separator) - len(separator.lstrip())]
        stop = "\n" + header if "\n" in lead else separator.rstrip()
        if stop not in stops:
            stops.append(stop)
    return token_ids, stops


def stop_strings_for(
    tokenizer: PreTrainedTokenizerBase, configured: Sequence[str] | None
) -> list[str]:
    """The stop strings to use: `configured` (a project's setting) when given, else those the
    chat template implies, e.g. ["\\nUser:", "\\nAssistant:"] for the tiny model's dialogues."""
    if configured is not None:
        return [s for s in configured if s]
    return _turn_end(tokenizer)[1]


def end_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """EOS, then the chat template's end-of-turn tokens (e.g. <|im_end|>, <|eot_id|>): a base
    model may not treat those as EOS, yet the turn is over."""
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError("the tokenizer has no EOS token, so samples could never finish")
    return [eos_id, *(t for t in _turn_end(tokenizer)[0] if t != eos_id)]


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the first occurrence of any (non-empty) stop string starts in `text`, or None."""
    positions = [i for s in stops if s and (i := text.find(s)) >= 0]
    return min(positions, default=None)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first stop string, which is dropped with everything after it."""
    position = find_stop(text, stops)
    return text if position is None else text[:position]


@dataclass
class Answer:
    """Where one generated row ends, and the text that is stored, scored and trained on."""

    token_ids: list[int]
    """The row up to and including the token that ended the answer."""
    text: str
    """The answer without its ending (EOS, stop string), whitespace-stripped."""
    finished: bool
    """False when the row ran out of tokens before anything ended it."""


def _decode(tokenizer: PreTrainedTokenizerBase, token_ids: list[int]) -> str:
    return cast(str, tokenizer.decode(token_ids, skip_special_tokens=True))


def _tokens_through_stop(
    tokenizer: PreTrainedTokenizerBase, token_ids: list[int], stops: Sequence[str]
) -> int:
    """The fewest leading tokens whose text holds a stop string (binary search: once a
    prefix's text holds one, every longer prefix's does). `token_ids` must hold one."""
    low, high = 0, len(token_ids)  # the text of low tokens holds none, of high tokens one
    while high - low > 1:
        middle = (low + high) // 2
        if find_stop(_decode(tokenizer, token_ids[:middle]), stops) is None:
            low = middle
        else:
            high = middle
    return high


def end_answer(
    tokenizer: PreTrainedTokenizerBase,
    row: Sequence[int],
    *,
    end_ids: Collection[int],
    stops: Sequence[str],
) -> Answer:
    """Cut one generated row at its first end token or stop string, whichever comes first.

    A stop string keeps the tokens that produced it, as an ending EOS is kept: they are the
    action that ended the turn, so PPO masks what follows and scores the answer there.
    """
    token_ids = list(row)
    while token_ids and token_ids[-1] == tokenizer.pad_token_id:
        token_ids.pop()  # `generate` pads rows that ended before the others
    end = next((i for i, t in enumerate(token_ids) if t in end_ids), None)
    body = token_ids if end is None else token_ids[:end]
    text = _decode(tokenizer, body)
    position = find_stop(text, stops)
    if position is not None:
        kept = body[: _tokens_through_stop(tokenizer, body, stops)]
        return Answer(token_ids=kept, text=text[:position].strip(), finished=True)
    if end is not None:
        return Answer(token_ids=token_ids[: end + 1], text=text.strip(), finished=True)
    return Answer(token_ids=token_ids, text=text.strip(), finished=False)


class StopAtText(StoppingCriteria):
    """Ends a row of `generate` once its new text holds a stop string: no tokens are spent
    after the answer. Only the last few tokens are decoded each step (a token holds at least
    one byte, so a stop string spans at most its length in bytes); `end_answer` then cuts
    at the exact place."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, stops: Sequence[str], *, prompt_width: int
    ) -> None:
        self.tokenizer = tokenizer
        self.stops = list(stops)
        self.prompt_width = prompt_width
        self.window = max(len(s.encode()) for s in self.stops) + 4

    def __call__(self, input_ids: torch.Tensor, scores: object, **kwargs: object) -> torch.Tensor:
        tail = input_ids[:, self.prompt_width :][:, -self.window :]  # (B, <= window)
        texts = self.tokenizer.batch_decode(tail, skip_special_tokens=True)
        done = [find_stop(text, self.stops) is not None for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # (B,)


def stopping_criteria(
    tokenizer: PreTrainedTokenizerBase, stops: Sequence[str], *, prompt_width: int
) -> StoppingCriteriaList:
    """`generate`'s stopping_criteria for `stops` (empty when there are none)."""
    if not stops:
        return StoppingCriteriaList()
    return StoppingCriteriaList([StopAtText(tokenizer, stops, prompt_width=prompt_width)])


@torch.no_grad()
def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    *,
    settings: GenerationSettings,
    seed: int,
) -> list[GeneratedSample]:
    """Sample one response per row of `prompts` in a single `generate` call under `seed`.

    This is the unit of reproducibility: the same rows, settings, seed and device give
    the same texts. Repeat a prompt in `prompts` to get several samples of it. A row that
    ends early is padded from then on; the others draw what they would without it.
    """
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos_id is None:
        raise ValueError("the tokenizer has no EOS token, so samples could never finish")
    if pad_id is None or pad_id == eos_id:
        raise ValueError("the pad token must exist and differ from EOS: call ensure_pad_token")
    end_ids = end_token_ids(tokenizer)
    stops = stop_strings_for(tokenizer, settings.stop_strings)
    budget = generation_budget(model, tokenizer, settings)
    fitted: list[FittedPrompt] = [fit_prompt(tokenizer, p, budget) for p in prompts]
    input_ids, attention_mask = _pad_left([f.ids for f in fitted], pad_id)  # (B, P), (B, P)
    device = model.device
    with forked_rng(device):
        torch.manual_seed(seed)
        output = cast(Any, model).generate(  # transformers types generate as a Tensor
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=settings.max_new_tokens,
            do_sample=settings.temperature > 0,
            repetition_penalty=settings.repetition_penalty,
            # Neutralise anything a checkpoint's generation_config could switch on.
            num_beams=1,
            num_return_sequences=1,
            min_new_tokens=0,
            no_repeat_ngram_size=0,
            eos_token_id=end_ids,
            pad_token_id=pad_id,
            stopping_criteria=stopping_criteria(tokenizer, stops, prompt_width=input_ids.shape[1]),
            **_sampling_kwargs(settings),
        )
    new_tokens = output[:, input_ids.shape[1] :].cpu()  # (B, N)

    samples = []
    for i, row in enumerate(new_tokens.tolist()):
        answer = end_answer(tokenizer, row, end_ids=end_ids, stops=stops)
        samples.append(
            fitted_sample(
                fitted[i],
                answer.text,
                answer.token_ids,
                finished=answer.finished,
                seed=seed,
                index=i,
            )
        )
    return samples


def fitted_sample(
    prompt: FittedPrompt,
    text: str,
    token_ids: list[int],
    *,
    finished: bool,
    seed: int,
    index: int,
) -> GeneratedSample:
    """A sample of row `index`, recording the prompt as the model read it (every backend's)."""
    return GeneratedSample(
        text=text,
        token_ids=token_ids,
        n_tokens=len(token_ids),
        finished=finished,
        seed=seed,
        index=index,
        prompt_ids=prompt.ids,
        prompt_dropped=prompt.dropped,
        prompt_truncated=prompt.truncated,
    )


def generation_budget(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: GenerationSettings
) -> int | None:
    """Tokens a prompt may take with `settings.max_new_tokens` after it in the model's
    context (None: no limit known); a longer prompt is shortened (`prompts.fit_prompt`)."""
    context = token_limit(tokenizer, model=model)
    budget = prompt_budget(context, settings.max_new_tokens)
    if context is not None and budget is not None and budget < 1:
        raise ValueError(no_room_message(context, settings.max_new_tokens))
    return budget


def plan_batches(
    n_prompts: int, *, n_per_prompt: int, batch_size: int, seed: int
) -> list[tuple[int, list[int]]]:
    """The (batch seed, prompt index of each row) of every batch `generate_samples` runs."""
    rows = [p for p in range(n_prompts) for _ in range(n_per_prompt)]
    return [
        (batch_seed(seed, b), rows[start : start + batch_size])
        for b, start in enumerate(range(0, len(rows), batch_size))
    ]


def generate_samples(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Prompt],
    *,
    n_per_prompt: int,
    settings: GenerationSettings,
    seed: int,
    batch_size: int,
) -> list[list[GeneratedSample]]:
    """`n_per_prompt` samples for each prompt, grouped by prompt in input order."""
    return sample_in_batches(
        lambda rows, b_seed: generate_batch(model, tokenizer, rows, settings=settings, seed=b_seed),
        prompts,
        n_per_prompt=n_per_prompt,
        seed=seed,
        batch_size=batch_size,
    )


def sample_in_batches(
    generate: Callable[[list[Prompt], int], list[GeneratedSample]],
    prompts: list[Prompt],
    *,
    n_per_prompt: int,
    seed: int,
    batch_size: int,
) -> list[list[GeneratedSample]]:
    """`generate(rows, batch_seed)` over every batch `plan_batches` plans, grouped by prompt in
    input order: one plan, so every backend draws the same batches with the same seeds."""
    if n_per_prompt < 1:
        raise ValueError(f"n_per_prompt must be >= 1, got {n_per_prompt}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    results: list[list[GeneratedSample]] = [[] for _ in prompts]
    plan = plan_batches(len(prompts), n_per_prompt=n_per_prompt, batch_size=batch_size, seed=seed)
    for b_seed, prompt_indices in plan:
        batch = generate([prompts[p] for p in prompt_indices], b_seed)
        for p, sample in zip(prompt_indices, batch, strict=True):
            results[p].append(sample)
    return results


# Flags shown to annotators ---------------------------------------------------------------


def is_empty(text: str) -> bool:
    """A response with nothing but whitespace: annotators cannot rank it meaningfully."""
    return not text.strip()


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def duplicate_of(texts: list[str]) -> list[int | None]:
    """For each text, the index of the first earlier text equal to it, else None.

    Equality ignores case and whitespace runs, so "Yes." and " yes. " are duplicates:
    asking annotators to order identical answers only produces noise.
    """
    first: dict[str, int] = {}
    out: list[int | None] = []
    for i, text in enumerate(texts):
        key = _normalise(text)
        out.append(first.get(key))
        first.setdefault(key, i)
    return out

"""Prompts as token ids, measured and fitted to the model's context: one rule for every stage.

A prompt longer than what the model can read (its context, less the tokens generated after it)
is left-truncated: its end (the question, the generation prompt) is kept, and a visible
marker ("…") stands where the cut start was, after BOS when the prompt begins with it. The
same rule serves annotation samples and the gate (`generation`), PPO rollouts, the reward
model, SFT and DPO, so each stage sees a long prompt the way the others do. Whether a
project samples such a prompt at all is its `long_prompts` setting (the sampling job skips
it under "skip").

Rendering and measuring a prompt (the same rule the web app measures prompts with at import)
live in app/prompt_tokens.py; the truncation is here. No torch here either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.prompt_tokens import Prompt as Prompt
from app.prompt_tokens import context_length as context_length
from app.prompt_tokens import count_prompt_tokens as count_prompt_tokens
from app.prompt_tokens import encode_prompt as encode_prompt
from app.prompt_tokens import format_prompt as format_prompt
from app.prompt_tokens import prompt_budget as prompt_budget
from app.prompt_tokens import prompt_token_ids as prompt_token_ids
from app.prompt_tokens import token_limit as token_limit
from app.prompt_tokens import tokenizer_context as tokenizer_context

TRUNCATION_MARKER = "…"
"""Text standing in front of a left-truncated prompt, where its start was cut."""


# Limits ---------------------------------------------------------------------------------


def sync_context(tokenizer: Any, model: Any) -> None:
    """Lower the tokenizer's model_max_length to the model's context, so that code holding
    only the tokenizer (encoders of the reward model, SFT, DPO) knows the limit too."""
    context = context_length(model)
    known = tokenizer_context(tokenizer)
    if context is not None and (known is None or context < known):
        tokenizer.model_max_length = context


def no_room_message(context: int, max_new_tokens: int) -> str:
    return (
        f"Max new tokens ({max_new_tokens}) leaves no room for a prompt in the model's context "
        f"of {context} tokens; lower it in the project settings"
    )


# Truncation -----------------------------------------------------------------------------


def marker_ids(tokenizer: Any) -> list[int]:
    """The ids of TRUNCATION_MARKER, without special tokens."""
    ids: list[int] = tokenizer(TRUNCATION_MARKER, add_special_tokens=False)["input_ids"]
    return ids


def truncate_left(tokenizer: Any, ids: Sequence[int], limit: int | None) -> list[int]:
    """`ids` when they fit in `limit`; else their end, behind BOS (when they start with it)
    and the marker. With no room for the marker, just the last `limit` ids."""
    ids = list(ids)
    if limit is None or len(ids) <= limit:
        return ids
    if limit <= 0:
        return []
    bos = tokenizer.bos_token_id
    head = ids[:1] if bos is not None and ids and ids[0] == bos else []
    head = head + marker_ids(tokenizer)
    keep = limit - len(head)
    if keep < 1:
        return ids[-limit:]
    return head + ids[-keep:]


def fit_prompt_ids(tokenizer: Any, prompt: Prompt, limit: int | None) -> list[int]:
    """The prompt's ids, left-truncated with the marker to at most `limit` tokens."""
    return truncate_left(tokenizer, prompt_token_ids(tokenizer, prompt), limit)

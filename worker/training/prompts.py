"""Prompts as token ids, measured and fitted to the model's context: one rule for every stage.

A prompt longer than what the model can read (its context, less the tokens generated after it)
is fitted in two steps (`fit_prompt`):

1. A conversation loses its oldest turns first, whole (a user message with the replies after
   it), until the rest fits: the chat template is applied to what is kept, so no turn is cut
   in the middle and the roles still alternate. The last user turn is never dropped. A
   system message at the start is kept (it says how to answer every turn), unless even it and
   the last user turn do not fit: then it goes before the last user turn is touched.
2. What still does not fit (a one-turn prompt, or a last turn longer than the context) is
   left-truncated: its end (the question, the generation prompt) is kept, and a visible
   marker ("…") stands where the cut start was, after BOS when the prompt begins with it.

The same rule serves annotation samples and the gate (`generation`), PPO rollouts, the reward
model, SFT and DPO, so each stage sees a long prompt the way the others do, and each reports
the prompts it shortened (`PromptCuts`). Whether a
project samples such a prompt at all is its `long_prompts` setting (the sampling job skips
it under "skip").

Rendering and measuring a prompt (the same rule the web app measures prompts with at import)
live in app/prompt_tokens.py; the truncation is here. No torch here either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
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


# Conversations: the oldest turns go first ------------------------------------------------

Message = dict[str, str]


def as_messages(prompt: Prompt) -> list[Message]:
    """A plain-text prompt is the one-user-message conversation."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def _shorter_conversations(messages: list[Message]) -> list[list[Message]]:
    """What may be kept of `messages`, from the fewest messages dropped to the most: the
    leading system message and a suffix starting at a user message, then the last user turn
    alone. Empty when nothing can be dropped (one turn, or no user message)."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        return []
    system = messages[:1] if messages[0]["role"] == "system" else []
    kept = [system + messages[i:] for i in users if i > len(system)]
    if system:
        kept.append(messages[users[-1] :])
    return kept


def _fit_turns(
    tokenizer: Any, messages: list[Message], budget: int, ids: list[int]
) -> tuple[list[Message], list[int]]:
    """(messages kept, their ids): the fewest oldest turns dropped for the rest to fit in
    `budget` (`ids`: those of all `messages`, which do not fit). When nothing fits, the
    shortest there is. Binary search: dropping more turns never lengthens the rendering."""
    candidates = _shorter_conversations(messages)
    if not candidates:
        return messages, ids
    low, high = 0, len(candidates) - 1  # the answer is in [low, high]
    found: dict[int, list[int]] = {}
    while low < high:
        middle = (low + high) // 2
        found[middle] = prompt_token_ids(tokenizer, candidates[middle])
        if len(found[middle]) <= budget:
            high = middle
        else:
            low = middle + 1
    if low not in found:
        found[low] = prompt_token_ids(tokenizer, candidates[low])
    return candidates[low], found[low]


def fit_conversation(
    tokenizer: Any, prompt: Prompt, budget: int | None
) -> tuple[list[Message], int]:
    """(the messages kept, how many were dropped): the whole conversation when it fits in
    `budget` tokens (None: no limit), else the fewest oldest turns dropped (module docstring).
    What is kept may still not fit; `fit_prompt` then left-truncates it."""
    messages = as_messages(prompt)
    if budget is None:
        return messages, 0
    ids = prompt_token_ids(tokenizer, messages)
    if len(ids) <= budget:
        return messages, 0
    kept, _ = _fit_turns(tokenizer, messages, budget, ids)
    return kept, len(messages) - len(kept)


@dataclass(frozen=True)
class FittedPrompt:
    """A prompt as the model reads it, and how it was shortened to fit."""

    ids: list[int]
    """Token ids, at most the limit."""
    dropped: int = 0
    """Messages dropped from the start of the conversation (whole oldest turns)."""
    truncated: bool = False
    """Still too long without those: left-truncated behind the marker."""

    @property
    def cut(self) -> bool:
        return self.dropped > 0 or self.truncated


def fit_prompt(
    tokenizer: Any, prompt: Prompt, limit: int | None, *, ids: list[int] | None = None
) -> FittedPrompt:
    """The prompt fitted to at most `limit` tokens, oldest turns first, then left-truncated
    (module docstring). `ids`: the whole prompt's ids when the caller has them already."""
    ids = prompt_token_ids(tokenizer, prompt) if ids is None else ids
    if limit is None or len(ids) <= limit:
        return FittedPrompt(ids)
    messages = as_messages(prompt)
    kept, kept_ids = _fit_turns(tokenizer, messages, max(limit, 0), ids)
    return FittedPrompt(
        truncate_left(tokenizer, kept_ids, limit),
        dropped=len(messages) - len(kept),
        truncated=len(kept_ids) > limit,
    )


def fit_prompt_ids(tokenizer: Any, prompt: Prompt, limit: int | None) -> list[int]:
    """The prompt's ids fitted to at most `limit` tokens (`fit_prompt`)."""
    return fit_prompt(tokenizer, prompt, limit).ids


def prompt_key(prompt: Prompt) -> str:
    """One string per distinct prompt (a conversation as sorted JSON)."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


@dataclass
class PromptCuts:
    """The distinct prompts a stage shortened to fit, by how: what its figures report."""

    turns_dropped: set[str] = field(default_factory=set)
    truncated: set[str] = field(default_factory=set)

    def note(self, prompt: Prompt, fitted: FittedPrompt) -> None:
        if fitted.dropped:
            self.turns_dropped.add(prompt_key(prompt))
        if fitted.truncated:
            self.truncated.add(prompt_key(prompt))

    def figures(self) -> dict[str, int]:
        """prompts_turns_dropped: conversations that lost their oldest turns;
        prompts_truncated: prompts left-truncated (a prompt may be both)."""
        return {
            "prompts_turns_dropped": len(self.turns_dropped),
            "prompts_truncated": len(self.truncated),
        }

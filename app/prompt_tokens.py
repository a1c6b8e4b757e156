"""Prompts measured in tokens: how a prompt is rendered for the model (chat template, BOS),
how long it is, and how many tokens it may take. One rule for the web app, which measures
prompts at import (app/projects/prompt_length.py), and for every stage of the worker, which
also fits them to the context (worker/training/prompts.py).

No torch here: these functions need only a tokenizer (and a model or its config for the
context).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Prompt = str | list[dict[str, str]]


MAX_SANE_CONTEXT = 10_000_000
"""A tokenizer's model_max_length above this means "unknown" (transformers writes 1e30)."""
_CONTEXT_ATTRIBUTES = (
    "max_position_embeddings",
    "n_positions",
    "n_ctx",
    "max_sequence_length",
    "seq_length",
    "max_seq_len",
)


def format_prompt(tokenizer: Any, prompt: Prompt) -> str:
    """Turn a prompt into the text the model should continue with the assistant's reply.

    A plain string is one user turn; a list of {"role", "content"} dicts is a
    conversation. The tokenizer's chat template is used when it has one; otherwise this
    template, which the tiny model is trained on:

        User: <user content>
        Assistant: <assistant content>
        <system content>
        Assistant:

    (one line per message, ending with "Assistant:" where the reply starts).
    """
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    for message in messages:
        if not {"role", "content"} <= set(message):
            raise ValueError(f"each message needs 'role' and 'content', got {message!r}")
    if getattr(tokenizer, "chat_template", None):
        text: str = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return text
    lines = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "user":
            lines.append(f"User: {content}")
        elif role == "assistant":
            lines.append(f"Assistant: {content}")
        else:
            lines.append(content)
    return "\n".join(lines) + "\nAssistant:"


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a formatted prompt, adding BOS only when the text does not carry it.

    Chat templates often write the BOS token into the text; adding it again would
    put two BOS tokens in front of every prompt.
    """
    bos = tokenizer.bos_token
    add_special = not (bos and text.startswith(bos))
    _quiet_about_length(tokenizer)
    ids: list[int] = tokenizer(text, add_special_tokens=add_special)["input_ids"]
    return ids


def _quiet_about_length(tokenizer: Any) -> None:
    """transformers warns once per tokenizer that a long prompt "will result in indexing
    errors": here it will not, every stage fits it to the context (`fit_prompt`)."""
    warned = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True


def prompt_token_ids(tokenizer: Any, prompt: Prompt) -> list[int]:
    """The ids the model reads for `prompt`, before any truncation."""
    return encode_prompt(tokenizer, format_prompt(tokenizer, prompt))


def count_prompt_tokens(tokenizer: Any, prompts: Sequence[Prompt]) -> list[int | None]:
    """Each prompt's length in tokens; None for one the tokenizer cannot render (e.g. a chat
    template that refuses its roles), so one odd prompt does not stop the others."""
    counts: list[int | None] = []
    for prompt in prompts:
        try:
            counts.append(len(prompt_token_ids(tokenizer, prompt)))
        except Exception:  # noqa: BLE001 - a template's own error, whatever its type
            counts.append(None)
    return counts


def context_length(model_or_config: Any) -> int | None:
    """How many positions the model reads (GPT-2's n_positions, Llama's
    max_position_embeddings, ...); None when its config does not say."""
    config = getattr(model_or_config, "config", model_or_config)
    get_text_config = getattr(config, "get_text_config", None)
    if callable(get_text_config):
        config = get_text_config()
    for name in _CONTEXT_ATTRIBUTES:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value:
            return value
    return None


def tokenizer_context(tokenizer: Any) -> int | None:
    """The tokenizer's model_max_length when it is a real limit (None when unset)."""
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value <= MAX_SANE_CONTEXT:
        return value
    return None


def token_limit(tokenizer: Any, max_length: int | None = None, model: Any = None) -> int | None:
    """The most tokens one sequence may hold: the smallest of `max_length`, the model's
    context and the tokenizer's model_max_length (None when none is known)."""
    limits = [max_length, tokenizer_context(tokenizer)]
    if model is not None:
        limits.append(context_length(model))
    known = [limit for limit in limits if limit is not None]
    return min(known) if known else None


def prompt_budget(context: int | None, max_new_tokens: int) -> int | None:
    """Tokens a prompt may take when `max_new_tokens` must follow it (None: no limit)."""
    if context is None:
        return None
    return context - max_new_tokens

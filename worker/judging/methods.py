"""Listwise and pairwise judging on top of any text completer (a local model or an endpoint).

A backend supplies `complete(prompt, retry)`; malformed answers are asked again up to the
spec's max_attempts, each retry told what was wrong (`Retry`), then MalformedOutput is raised
with the last reason so the task is skipped with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from worker.judging.pairwise import rank_pairwise
from worker.judging.parse import parse_harmful, parse_ranking, parse_winner
from worker.judging.prompt import render_pair, render_prompt
from worker.judging.spec import JudgeInput, JudgeSpec, MalformedOutput, Verdict, truncate_raw

T = TypeVar("T")


@dataclass(frozen=True)
class Retry:
    """What went wrong with the previous answer, for the backend to act on (or ignore)."""

    attempt: int
    """1-based number of the attempt about to be made (≥ 2)."""
    previous: str
    reason: str


Completer = Callable[[str, Retry | None], str]


@dataclass
class Parsed(Generic[T]):
    value: T
    attempts: int
    raw: str


def ask_until_parsed(
    complete: Completer, prompt: str, parse: Callable[[str], T], max_attempts: int
) -> Parsed[T]:
    """Ask, parse, and on MalformedOutput ask again (at most max_attempts answers in all)."""
    retry: Retry | None = None
    for attempt in range(1, max_attempts + 1):
        answer = ""
        try:  # an unreadable reply from the backend counts like an unparsable answer
            answer = complete(prompt, retry)
            return Parsed(parse(answer), attempt, answer)
        except MalformedOutput as exc:
            retry = Retry(attempt + 1, answer, str(exc))
    assert retry is not None
    raise MalformedOutput(f"{retry.reason} (after {max_attempts} attempts)", max_attempts)


def judge_listwise(spec: JudgeSpec, item: JudgeInput, complete: Completer) -> Verdict:
    """One prompt with every sample; the RANKING line maps labels [1]..[K] back to sample ids."""
    ids = [sample_id for sample_id, _ in item.samples]
    k = len(ids)
    parsed = ask_until_parsed(
        complete, render_prompt(spec, item), lambda text: parse_ranking(text, k), spec.max_attempts
    )
    groups = [[ids[label - 1] for label in group] for group in parsed.value]
    harmful = (
        {ids[label - 1]: why for label, why in parse_harmful(parsed.raw, k).items()}
        if spec.flag_harm
        else {}
    )
    return Verdict(groups, parsed.attempts, harmful, truncate_raw(parsed.raw))


def judge_pairs(spec: JudgeSpec, item: JudgeInput, complete: Completer) -> Verdict:
    """Each pair in both orders (k·(k-1) prompts), aggregated with Bradley-Terry."""
    texts = [text for _, text in item.samples]
    attempts = 0
    last = ""

    def ask(i: int, j: int) -> str:
        nonlocal attempts, last
        prompt = render_pair(spec, item, texts[i], texts[j])
        parsed = ask_until_parsed(complete, prompt, parse_winner, spec.max_attempts)
        attempts += parsed.attempts
        last = parsed.raw
        return parsed.value

    groups = rank_pairwise([sample_id for sample_id, _ in item.samples], ask)
    return Verdict(groups, attempts, {}, truncate_raw(last))

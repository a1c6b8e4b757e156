"""Preferences a simulated annotator can hold: callables scoring a response (higher = better).

Pass one to `rankloop simulate --preference NAME` by name (see PREFERENCES), or as
`module.path:function` for your own.
"""

from __future__ import annotations

import importlib
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Preference = Callable[[str], float]

_WORD = re.compile(r"[A-Za-z']+")
POSITIVE = frozenset(
    "good great kind happy helpful friendly thank thanks please glad love nice calm warm "
    "simple clear gentle bright fresh healthy safe enjoy welcome".split()
)
NEGATIVE = frozenset(
    "bad sad angry hate rude wrong ugly boring awful terrible poor cold dirty harm".split()
)


def keyword(word: str = "please") -> Preference:
    """Count occurrences of a word: a rule a small policy can learn within a few rounds."""
    target = word.lower()

    def score(text: str) -> float:
        return float(sum(w.lower() == target for w in _WORD.findall(text)))

    return score


def target_length(words: int = 20) -> Preference:
    """Prefer responses near a length; the score falls off with the distance in words."""

    def score(text: str) -> float:
        return -abs(len(_WORD.findall(text)) - words) / max(words, 1)

    return score


def sentiment(text: str) -> float:
    """Positive minus negative words from small word lists."""
    tokens = [w.lower() for w in _WORD.findall(text)]
    return float(sum(t in POSITIVE for t in tokens) - sum(t in NEGATIVE for t in tokens))


PREFERENCES: dict[str, Callable[[], Preference]] = {
    "sentiment": lambda: sentiment,
    "keyword": keyword,
    "length": target_length,
}


def load_preference(spec: str) -> Preference:
    """'sentiment', 'keyword:please', 'length:30', or 'package.module:function'."""
    name, _, arg = spec.partition(":")
    if name in PREFERENCES:
        factory = PREFERENCES[name]
        if not arg:
            return factory()
        return factory(int(arg) if arg.isdigit() else arg)  # type: ignore[call-arg]
    if arg:
        try:
            function = getattr(importlib.import_module(name), arg)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"Cannot load preference {spec!r}: {exc}") from None
        if not callable(function):
            raise ValueError(f"{spec} is not callable")
        return function  # type: ignore[no-any-return]
    raise ValueError(
        f"Unknown preference {spec!r}: use {', '.join(PREFERENCES)} or module.path:function"
    )


@dataclass(frozen=True)
class AnnotatorModel:
    """How one simulated person deviates from the preference.

    Ranks by Plackett-Luce sampling (Gumbel-max over score/temperature + bias), so each pair
    is ordered with Bradley-Terry probability σ((s_a - s_b)/temperature).
    """

    temperature: float = 0.5
    bias: float = 0.0  # added to responses longer than the (lower) median: a taste for length
    tie_margin: float = 0.0  # perceived scores closer than this are tied


def rank(
    texts: Sequence[str],
    ids: Sequence[int],
    preference: Preference,
    person: AnnotatorModel,
    rng: random.Random,
) -> list[list[int]]:
    """Groups of ids, best first, as the annotator would submit them."""
    lengths = sorted(len(t) for t in texts)
    median = lengths[(len(lengths) - 1) // 2] if lengths else 0  # lower median: of two, the
    # longer one counts as long
    perceived = []
    for text, sample_id in zip(texts, ids, strict=True):
        utility = preference(text) + (person.bias if len(text) > median else 0.0)
        gumbel = -math.log(-math.log(max(rng.random(), 1e-12)))
        perceived.append((utility / max(person.temperature, 1e-6) + gumbel, sample_id))
    perceived.sort(reverse=True)
    groups: list[list[int]] = []
    last: float | None = None
    for value, sample_id in perceived:
        if groups and last is not None and last - value <= person.tie_margin:
            groups[-1].append(sample_id)
        else:
            groups.append([sample_id])
        last = value
    return groups

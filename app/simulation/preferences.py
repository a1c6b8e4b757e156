"""Preferences a simulated annotator can hold: callables scoring a response (higher = better).

Pass one to `rankloop simulate --preference NAME` by name (see PREFERENCES), or as
`module.path:function` for your own. The families of the loop benchmark (FAMILIES) draw their
parameters at random from what the tiny model says (`draw_preference`) and print as a spec
that `load_preference` reads back, so a subprocess and a table get the same preference.
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


def target_length(words: int | str = 20) -> Preference:
    """Prefer responses near a length; the score falls off with the distance in words."""
    words = int(words)  # 'length:abc' fails here, not in the annotators' threads

    def score(text: str) -> float:
        return -abs(len(_WORD.findall(text)) - words) / max(words, 1)

    return score


def sentiment(text: str) -> float:
    """Positive minus negative words from small word lists."""
    tokens = [w.lower() for w in _WORD.findall(text)]
    return float(sum(t in POSITIVE for t in tokens) - sum(t in NEGATIVE for t in tokens))


# Families with random parameters (bench/loop.py --suite). Specs: keywords:w1+w2+w3,
# length:23, keywords_length:w1+w2@23, avoid:w1+w2, sentiment_words:p1+p2/n1+n2, opening:w1+w2.

POSITIVE_LEXICON = POSITIVE | frozenset(
    "easy easier best better free soft help helps friends clean strong quiet comfortable fun "
    "together".split()
)
NEGATIVE_LEXICON = NEGATIVE | frozenset(
    "avoid damp tired loud stop slow hard dark stress hurt break breaks heavy worse difficult "
    "problem pain noise sick danger dangerous weak lose lost".split()
)
LENGTH_RANGE = (10, 35)
"""Target lengths in words: the 10th to 90th percentile of the answers in the tiny model's
corpus (5-62 words, median 28), so any target is one the model has seen answers of."""


def _words(arg: str | int) -> list[str]:
    words = [w.strip().lower() for w in str(arg).split("+") if w.strip()]
    if not words or not all(_WORD.fullmatch(w) for w in words):
        raise ValueError(f"expected words joined by '+', got {arg!r}")
    return words


def _count(text: str, words: frozenset[str]) -> int:
    return sum(w.lower() in words for w in _WORD.findall(text))


def keywords(arg: str | int) -> Preference:
    """'w1+w2+w3': one point per occurrence of any of the words."""
    wanted = frozenset(_words(arg))

    def score(text: str) -> float:
        return float(_count(text, wanted))

    return score


def keywords_length(arg: str | int) -> Preference:
    """'w1+w2@23': keyword count minus the distance from the target length over the target."""
    words, at, length = str(arg).rpartition("@")
    if not at or not length.isdigit() or int(length) < 1:
        raise ValueError(f"expected WORDS@LENGTH, got {arg!r}")
    counted, near = keywords(words), target_length(int(length))

    def score(text: str) -> float:
        return counted(text) + near(text)

    return score


def avoid(arg: str | int) -> Preference:
    """'w1+w2': minus one point per occurrence of any of the words."""
    counted = keywords(arg)

    def score(text: str) -> float:
        return -counted(text)

    return score


def sentiment_words(arg: str | int) -> Preference:
    """'p1+p2/n1+n2': positive words minus negative words, from lists drawn per run."""
    positive, slash, negative = str(arg).partition("/")
    if not slash:
        raise ValueError(f"expected POSITIVE/NEGATIVE words, got {arg!r}")
    good, bad = frozenset(_words(positive)), frozenset(_words(negative))

    def score(text: str) -> float:
        return float(_count(text, good) - _count(text, bad))

    return score


def opening(arg: str | int) -> Preference:
    """'w1+w2': 1 when the answer's first word is one of them: a choice made at the first
    token, where the other families reward what the whole answer says."""
    wanted = frozenset(_words(arg))

    def score(text: str) -> float:
        first = _WORD.search(text)
        return float(first is not None and first.group().lower() in wanted)

    return score


PREFERENCES: dict[str, Callable[..., Preference]] = {
    "sentiment": lambda: sentiment,
    "keyword": keyword,
    "length": target_length,
    "keywords": keywords,
    "keywords_length": keywords_length,
    "avoid": avoid,
    "sentiment_words": sentiment_words,
    "opening": opening,
}
FAMILIES = ("keywords", "length", "keywords_length", "avoid", "sentiment_words", "opening")


def draw_preference(
    family: str,
    rng: random.Random,
    vocabulary: Sequence[str],
    *,
    openers: Sequence[str] = (),
    lengths: tuple[int, int] = LENGTH_RANGE,
) -> tuple[str, Preference]:
    """A preference of the family with parameters drawn by `rng`, and its spec: three words
    (keywords, avoid, opening), two words and a length (keywords_length), a length, or three
    positive and two negative words (sentiment_words).

    `vocabulary`: words the model says, neither rare nor everywhere (`answer_vocabulary`), so a
    rewarded word is reachable and not already saturated; `openers`: words answers start with
    (`answer_openers`; default: the vocabulary). Sentiment words are the vocabulary's words in
    POSITIVE_LEXICON and NEGATIVE_LEXICON.
    """
    words = sorted(set(vocabulary))

    def pick(pool: Sequence[str], count: int) -> str:
        pool = sorted(set(pool))
        if not pool:
            raise ValueError(f"no words to draw for {family!r}")
        return "+".join(rng.sample(pool, min(count, len(pool))))

    if family == "keywords":
        spec = f"keywords:{pick(words, 3)}"
    elif family == "length":
        spec = f"length:{rng.randint(*lengths)}"
    elif family == "keywords_length":
        spec = f"keywords_length:{pick(words, 2)}@{rng.randint(*lengths)}"
    elif family == "avoid":
        spec = f"avoid:{pick(words, 3)}"
    elif family == "sentiment_words":
        good = [w for w in words if w in POSITIVE_LEXICON]
        bad = [w for w in words if w in NEGATIVE_LEXICON]
        spec = f"sentiment_words:{pick(good, 3)}/{pick(bad, 2)}"
    elif family == "opening":
        spec = f"opening:{pick(openers or words, 3)}"
    else:
        raise ValueError(f"Unknown family {family!r}: use {', '.join(FAMILIES)}")
    return spec, load_preference(spec)


def _answer_words(answer: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(answer)]


def answer_vocabulary(
    answers: Sequence[str], *, low: float = 0.02, high: float = 0.15, min_length: int = 3
) -> list[str]:
    """Alphabetic words (at least `min_length` letters) found in between `low` and `high` of
    the answers: said often enough to be reachable, rarely enough to leave room to improve.

    On the tiny model's corpus that is 159 words, each in 1.5-6 % of the base model's samples
    (median 2.7 %), so three rewarded words appear in 6-11 % of them. With 1-10 % of the
    answers (median 1.6 % of samples) most pairs of a task tied at 0: the labels' ceiling
    was 0.53, too little signal for any reward model."""
    found: dict[str, int] = {}
    for answer in answers:
        for word in set(_answer_words(answer)):
            found[word] = found.get(word, 0) + 1
    n = len(answers)
    return sorted(
        w
        for w, c in found.items()
        if low * n <= c <= high * n and w.isalpha() and len(w) >= min_length
    )


def answer_openers(
    answers: Sequence[str], *, low: float = 0.01, high: float = 0.10, min_length: int = 3
) -> list[str]:
    """First words that open between `low` and `high` of the answers."""
    firsts: dict[str, int] = {}
    for answer in answers:
        words = _answer_words(answer)
        if words:
            firsts[words[0]] = firsts.get(words[0], 0) + 1
    n = len(answers)
    return sorted(
        w
        for w, c in firsts.items()
        if low * n <= c <= high * n and w.isalpha() and len(w) >= min_length
    )


def load_preference(spec: str) -> Preference:
    """'sentiment', 'keyword:please', 'length:30', a family's spec (draw_preference), or
    'package.module:function'."""
    name, _, arg = spec.partition(":")
    if name in PREFERENCES:
        factory = PREFERENCES[name]
        if not arg:
            try:
                return factory()
            except TypeError:
                raise ValueError(f"Preference {name!r} needs an argument: {name}:...") from None
        try:
            return factory(int(arg) if arg.isdigit() else arg)
        except ValueError as exc:
            raise ValueError(f"Bad preference {spec!r}: {exc}") from None
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
    reversed: bool = False
    """Adversarial: ranks by the negated preference (the order a careless or hostile person
    gives), so each pair is ordered right with probability σ(-(s_a - s_b)/temperature)."""


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
        liked = -preference(text) if person.reversed else preference(text)
        utility = liked + (person.bias if len(text) > median else 0.0)
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

"""From an annotator's ranking (tie groups, best first) to the pairwise comparisons we rate on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations


class InvalidRanking(ValueError):
    """A ranking that cannot be turned into comparisons; the message names the offending ids."""


@dataclass(frozen=True)
class Pair:
    """One comparison. For a tie, `winner` is the smaller id so equal ties compare equal."""

    winner: int
    loser: int
    tie: bool


def _check_shape(groups: Sequence[Sequence[int]]) -> None:
    """The checks every ranking must pass, whatever ids the task expects."""
    if any(len(group) == 0 for group in groups):
        raise InvalidRanking("a ranking group is empty")
    counts = Counter(sample_id for group in groups for sample_id in group)
    repeated = sorted(sample_id for sample_id, n in counts.items() if n > 1)
    if repeated:
        raise InvalidRanking(f"samples ranked more than once: {_ids(repeated)}")
    if len(counts) < 2:
        raise InvalidRanking("a ranking needs at least 2 samples")


def _ids(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in ids)


def ranking_to_pairs(
    groups: Sequence[Sequence[int]], *, text_keys: Mapping[int, str] | None = None
) -> list[Pair]:
    """Every pair of ranked samples once: C(K, 2) pairs, ties inside a group
    (docs/training-notes.md §Pairs).

    Pairs come out in ranking order (best group first) so online Elo sees a stable order.
    With `text_keys` (sample → `text_key` of its text), a pair of two samples with the same
    text is left out: ranking one answer against itself states no preference.
    """
    _check_shape(groups)
    pairs: list[Pair] = []
    for rank, group in enumerate(groups):
        pairs.extend(Pair(min(a, b), max(a, b), tie=True) for a, b in combinations(group, 2))
        pairs.extend(
            Pair(winner, loser, tie=False)
            for worse in groups[rank + 1 :]
            for winner in group
            for loser in worse
        )
    if text_keys is not None:
        pairs = [p for p in pairs if text_keys[p.winner] != text_keys[p.loser]]
    return pairs


def validate_ranking(groups: Sequence[Sequence[int]], expected_ids: Collection[int]) -> None:
    """Reject a submitted ranking that does not rank exactly the task's samples, once each.

    The message is meant for the annotator's screen, so it names every offending id.
    """
    problems: list[str] = []
    if any(len(group) == 0 for group in groups):
        problems.append("a ranking group is empty")
    seen = [sample_id for group in groups for sample_id in group]
    counts = Counter(seen)
    expected = set(expected_ids)
    repeated = sorted(sample_id for sample_id, n in counts.items() if n > 1)
    unknown = sorted(set(counts) - expected)
    missing = sorted(expected - set(counts))
    if repeated:
        problems.append(f"ranked more than once: {_ids(repeated)}")
    if unknown:
        problems.append(f"not in this task: {_ids(unknown)}")
    if missing:
        problems.append(f"missing from the ranking: {_ids(missing)}")
    if problems:
        raise InvalidRanking("invalid ranking: " + "; ".join(problems))
    _check_shape(groups)

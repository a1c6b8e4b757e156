"""Pairwise aggregation: both orders asked, Bradley-Terry over the consistent outcomes."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from worker.judging.pairwise import bradley_terry, pair_outcome, rank_pairwise


def truthful(scores: list[int]):  # type: ignore[no-untyped-def]
    def ask(i: int, j: int) -> str:
        if scores[i] == scores[j]:
            return "TIE"
        return "A" if scores[i] > scores[j] else "B"

    return ask


def expected_groups(ids: list[int], scores: list[int]) -> list[list[int]]:
    levels = sorted(set(scores), reverse=True)
    return [sorted(i for i, s in zip(ids, scores, strict=True) if s == level) for level in levels]


@given(st.lists(st.integers(0, 3), min_size=1, max_size=6))
def test_a_truthful_judge_recovers_the_order_with_ties(scores: list[int]) -> None:
    ids = [100 + n for n in range(len(scores))]
    groups = rank_pairwise(ids, truthful(scores))
    assert [sorted(g) for g in groups] == expected_groups(ids, scores)


def test_every_pair_is_asked_in_both_orders() -> None:
    asked: list[tuple[int, int]] = []

    def ask(i: int, j: int) -> str:
        asked.append((i, j))
        return "TIE"

    rank_pairwise([1, 2, 3, 4], ask)
    assert sorted(asked) == sorted((i, j) for i in range(4) for j in range(4) if i != j)


def test_a_judge_that_always_picks_the_first_position_ties_everything() -> None:
    assert rank_pairwise([5, 6, 7], lambda i, j: "A") == [[5, 6, 7]]


def test_an_inconsistent_pair_is_a_tie() -> None:
    assert pair_outcome("A", "B") == 1.0
    assert pair_outcome("B", "A") == 0.0
    assert pair_outcome("A", "A") == 0.5
    assert pair_outcome("TIE", "B") == 0.5
    # 0 beats 1 consistently; 1 vs 2 flips with position: 1 and 2 tie below 0.
    answers = {(0, 1): "A", (1, 0): "B", (0, 2): "A", (2, 0): "B", (1, 2): "A", (2, 1): "A"}
    assert rank_pairwise([10, 11, 12], lambda i, j: answers[(i, j)]) == [[10], [11, 12]]


def test_bradley_terry_matches_the_closed_form_for_two_items() -> None:
    # One pair, score 0.75: wins 0.85 vs 0.35 (prior 0.1 each), so p0/p1 = 0.85/0.35.
    strengths = bradley_terry(2, {(0, 1): 0.75})
    assert math.isclose(strengths[0] - strengths[1], math.log(0.85 / 0.35), rel_tol=1e-6)


def test_a_cycle_gives_equal_strengths() -> None:
    strengths = bradley_terry(3, {(0, 1): 1.0, (1, 2): 1.0, (0, 2): 0.0})
    assert max(strengths) - min(strengths) < 1e-9

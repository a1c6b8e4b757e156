"""Turning a ranking (tie groups, best first) into pairwise comparisons."""

from __future__ import annotations

from itertools import combinations
from math import comb

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ratings.pairs import InvalidRanking, Pair, ranking_to_pairs, validate_ranking


def test_strict_ranking_yields_every_pair_with_the_better_sample_as_winner() -> None:
    pairs = ranking_to_pairs([[7], [3], [9]])

    assert pairs == [Pair(7, 3, False), Pair(7, 9, False), Pair(3, 9, False)]


def test_tie_group_yields_ties_with_the_smaller_id_first() -> None:
    pairs = ranking_to_pairs([[5], [4, 2], [1]])

    assert set(pairs) == {
        Pair(5, 4, False),
        Pair(5, 2, False),
        Pair(5, 1, False),
        Pair(2, 4, True),
        Pair(4, 1, False),
        Pair(2, 1, False),
    }
    assert len(pairs) == comb(4, 2)


def test_one_group_is_all_ties() -> None:
    pairs = ranking_to_pairs([[3, 1, 2]])

    assert sorted((p.winner, p.loser) for p in pairs) == [(1, 2), (1, 3), (2, 3)]
    assert all(p.tie for p in pairs)


@settings(derandomize=True, deadline=None, max_examples=50)
@given(
    ids=st.lists(st.integers(1, 1000), min_size=2, max_size=9, unique=True),
    cuts=st.sets(st.integers(1, 8)),
)
def test_pairs_cover_each_unordered_pair_exactly_once(ids: list[int], cuts: set[int]) -> None:
    bounds = [0, *sorted(c for c in cuts if c < len(ids)), len(ids)]
    groups = [ids[lo:hi] for lo, hi in zip(bounds, bounds[1:], strict=False)]
    rank = {sample_id: r for r, group in enumerate(groups) for sample_id in group}

    pairs = ranking_to_pairs(groups)

    assert len(pairs) == comb(len(ids), 2)
    assert {frozenset((p.winner, p.loser)) for p in pairs} == {
        frozenset(pair) for pair in combinations(ids, 2)
    }
    assert sum(p.tie for p in pairs) == sum(comb(len(g), 2) for g in groups)
    for p in pairs:
        if p.tie:
            assert rank[p.winner] == rank[p.loser]
            assert p.winner < p.loser
        else:
            assert rank[p.winner] < rank[p.loser]


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([[1], [], [2]], "empty"),
        ([[1, 2], [2]], "more than once: 2"),
        ([[1]], "at least 2"),
        ([], "at least 2"),
    ],
)
def test_invalid_rankings_raise(groups: list[list[int]], message: str) -> None:
    with pytest.raises(InvalidRanking, match=message):
        ranking_to_pairs(groups)


def test_invalid_ranking_is_a_value_error() -> None:
    assert issubclass(InvalidRanking, ValueError)


def test_validate_ranking_names_unknown_missing_and_repeated_ids() -> None:
    with pytest.raises(InvalidRanking) as caught:
        validate_ranking([[1, 2], [2, 9]], expected_ids={1, 2, 3, 4})

    message = str(caught.value)
    assert "more than once: 2" in message
    assert "not in this task: 9" in message
    assert "missing from the ranking: 3, 4" in message


def test_validate_ranking_accepts_every_expected_id_once() -> None:
    validate_ranking([[3], [1, 2]], expected_ids=[1, 2, 3])


def test_two_samples_of_one_text_make_no_pair() -> None:
    keys = {1: "paris.", 2: "paris.", 3: "lyon."}

    pairs = ranking_to_pairs([[1], [3], [2]], text_keys=keys)

    assert pairs == [Pair(1, 3, False), Pair(3, 2, False)]

"""Online Elo as Chatbot Arena computes it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ratings import elo
from app.ratings.pairs import Pair


def test_equal_ratings_expect_half() -> None:
    assert elo.expected_score(1234.0, 1234.0) == 0.5


def test_a_400_point_gap_means_ten_to_one_odds() -> None:
    assert elo.expected_score(1400.0, 1000.0) == pytest.approx(10 / 11)
    assert elo.expected_score(1000.0, 1400.0) == pytest.approx(1 / 11)


def test_update_moves_k_times_the_surprise_and_is_zero_sum() -> None:
    r_a, r_b = elo.update(1000.0, 1000.0, 1.0)

    assert r_a == pytest.approx(1000.0 + elo.K_FACTOR * 0.5)
    assert r_a + r_b == pytest.approx(2000.0)


def test_tie_between_equal_ratings_changes_nothing() -> None:
    assert elo.update(1000.0, 1000.0, 0.5, k=32.0) == (1000.0, 1000.0)


def test_upset_moves_more_than_expected_win() -> None:
    favourite_wins = elo.update(1200.0, 1000.0, 1.0)[0] - 1200.0
    underdog_wins = elo.update(1000.0, 1200.0, 1.0)[0] - 1000.0

    assert underdog_wins > favourite_wins > 0


def test_elo_ratings_start_unseen_ids_at_initial_and_keep_given_ones() -> None:
    ratings = elo.elo_ratings([Pair(1, 2, False)], initial={1: 1100.0, 3: 900.0})

    assert ratings[3] == 900.0
    assert ratings[1] > 1100.0
    assert ratings[2] < elo.INITIAL


def test_elo_depends_on_vote_order() -> None:
    votes = [Pair(1, 2, False), Pair(2, 1, False)]

    forward = elo.elo_ratings(votes)
    backward = elo.elo_ratings(votes[::-1])

    assert forward[1] < elo.INITIAL < backward[1]  # the last vote counts more


@settings(derandomize=True, deadline=None, max_examples=30)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 5), st.booleans()).filter(
            lambda v: v[0] != v[1]
        ),
        max_size=40,
    )
)
def test_elo_ratings_conserve_the_total(votes: list[tuple[int, int, bool]]) -> None:
    ratings = elo.elo_ratings(Pair(w, lo, tie) for w, lo, tie in votes)

    assert sum(ratings.values()) == pytest.approx(elo.INITIAL * len(ratings))

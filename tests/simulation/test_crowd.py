"""Mixed crowds of simulated annotators: the composition, the reversed kind, the CLI's parsing."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from app.simulation.annotators import (
    MIXED_CROWD,
    CrowdGroup,
    crowd_counts,
    crowd_models,
    parse_crowd,
)
from app.simulation.metrics import kendall_tau
from app.simulation.preferences import AnnotatorModel, keyword, rank
from rankloop.cli import app

TEXTS = [
    "No.",
    "Please try.",
    "Please, please try it.",
    "Please, please, please do.",
    "Please please please please.",
    "Five: please please please please please.",
]
IDS = list(range(1, len(TEXTS) + 1))


def test_mixed_crowd_of_ten_is_six_normal_three_noisier_one_reversed() -> None:
    people = crowd_models(10, "mixed", noise=0.5, bias=0.0, seed=7)
    assert sum(p.temperature == 0.5 and not p.reversed for p in people) == 6
    assert sum(p.temperature == 1.5 and not p.reversed for p in people) == 3
    assert [p.reversed for p in people].count(True) == 1
    assert crowd_models(10, MIXED_CROWD, noise=0.5, bias=0.0, seed=7) == people


def test_the_seed_moves_who_is_reversed_not_how_many() -> None:
    placed = {
        [p.reversed for p in crowd_models(10, "mixed", noise=0.5, bias=0.0, seed=s)].index(True)
        for s in range(20)
    }
    assert len(placed) > 1


def test_crowd_keeps_each_persons_length_bias_from_the_seed() -> None:
    plain = crowd_models(10, "1:1", noise=0.5, bias=0.3, seed=4)
    mixed = crowd_models(10, "mixed", noise=0.5, bias=0.3, seed=4)
    assert sorted(p.bias for p in plain) == sorted(p.bias for p in mixed)
    assert len({p.bias for p in mixed}) == 10


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=0, max_value=64),
    shares=st.lists(st.floats(min_value=0.1, max_value=100), min_size=1, max_size=5),
)
def test_crowd_counts_sum_to_the_crowd_and_stay_within_one_of_the_shares(
    count: int, shares: list[float]
) -> None:
    groups = [CrowdGroup(share) for share in shares]
    counts = crowd_counts(count, groups)
    assert sum(counts) == count
    total = sum(shares)
    for n, share in zip(counts, shares, strict=True):
        assert abs(n - count * share / total) < 1 + 1e-9


@pytest.mark.parametrize(("person", "sign"), [(False, 1), (True, -1)])
def test_a_reversed_annotator_anti_correlates_with_the_preference(person: bool, sign: int) -> None:
    preference = keyword("please")
    annotator = AnnotatorModel(temperature=0.5, reversed=person)
    rng = random.Random(1)
    orders = []
    for _ in range(200):
        groups = rank(TEXTS, IDS, preference, annotator, rng)
        place = {sid: level for level, group in enumerate(groups) for sid in group}
        # (preference score, place counted from the end): concordant when ranked by preference
        orders.append([(preference(t), -place[i]) for t, i in zip(TEXTS, IDS, strict=True)])
    tau = kendall_tau(orders)
    assert tau is not None
    assert sign * tau > 0.5


def test_parse_crowd_reads_shares_factors_and_reversed() -> None:
    assert parse_crowd("60:1, 30:3 ,10:Reversed") == [
        CrowdGroup(60.0),
        CrowdGroup(30.0, noise_factor=3.0),
        CrowdGroup(10.0, reversed=True),
    ]
    assert parse_crowd("mixed") == parse_crowd(MIXED_CROWD)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("60", "Bad crowd part '60': expected SHARE:NOISE_FACTOR or SHARE:reversed"),
        ("sixty:1", "Bad crowd share 'sixty' in 'sixty:1': not a number"),
        ("0:1", "Bad crowd share '0' in '0:1': must be above 0"),
        ("60:1,40:loud", "Bad crowd kind 'loud' in '40:loud'"),
        ("60:-2", "Bad noise factor '-2' in '60:-2': must be 0 or more"),
        ("60:1,", "Bad crowd part ''"),
    ],
)
def test_parse_crowd_says_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        parse_crowd(spec)


def test_simulate_refuses_a_bad_crowd_before_touching_the_project() -> None:
    # Project 999999 does not exist: a parsing error must come first, with exit code 1.
    result = CliRunner().invoke(
        app, ["simulate", "--project", "999999", "--crowd", "60:1,40:loud"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1
    assert "Bad crowd kind 'loud' in '40:loud'" in result.output

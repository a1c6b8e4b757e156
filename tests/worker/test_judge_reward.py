"""A judge as the reward (worker/training/judge_reward.py): orderings become centred scores,
the stages' flat rows become groups and back, the gate puts each prompt's new and old answers
in one group, and a GRPO stage on the tiny model scored by a simulated judge moves the policy
toward the judge's preference."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import pytest

from app.simulation.preferences import load_preference
from tests.worker.test_critic_free import PROMPTS, STAGE
from worker.judging import JudgeSpec, make_judge
from worker.judging.spec import JudgeInput, MalformedOutput, Verdict
from worker.training.grpo import GRPOConfig, train_grpo
from worker.training.judge_reward import (
    Group,
    JudgeReward,
    flat,
    per_answer,
    rank_scores,
    versus,
)
from worker.training.models import load_causal_lm, load_tokenizer
from worker.training.ppo import PPOConfig, train_ppo
from worker.training.prompts import Prompt

SHORTER = "length:0"
"""The simulated judge's preference: fewer words is better (app/simulation/preferences.py)."""


def _simulated(agreement: float = 1.0) -> JudgeReward:
    spec = JudgeSpec(
        backend="simulated",
        model="simulated",
        method="listwise",
        prompt_template="",
        principles=[],
        options={"preference": SHORTER, "agreement": agreement, "seed": 0},
    )
    return JudgeReward(make_judge(spec), guidelines="", scores_answers=False)


# Orderings as scores -------------------------------------------------------------------------


def test_a_strict_order_scores_centred_with_unit_spread_best_highest() -> None:
    scores = rank_scores([[7], [3], [9], [1]], [1, 3, 7, 9])  # in ids' order

    assert scores[2] > scores[1] > scores[3] > scores[0]  # 7 best, then 3, 9, 1
    assert statistics.fmean(scores) == pytest.approx(0.0, abs=1e-12)
    assert statistics.pstdev(scores) == pytest.approx(1.0)


def test_tied_answers_score_alike_and_a_fully_tied_group_scores_zero() -> None:
    scores = rank_scores([[0, 1], [2]], [0, 1, 2])

    assert scores[0] == scores[1] > scores[2]
    assert statistics.fmean(scores) == pytest.approx(0.0, abs=1e-12)
    assert rank_scores([[0, 1, 2]], [0, 1, 2]) == [0.0, 0.0, 0.0]


def test_an_ordering_missing_an_answer_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly"):
        rank_scores([[0], [1]], [0, 1, 2])


# Groups and flat rows -------------------------------------------------------------------------


def _words(prompts: list[Prompt], responses: list[str]) -> list[float]:
    return [float(len(r.split())) for r in responses]


def test_flat_rows_are_scored_group_by_group_and_come_back_in_order() -> None:
    seen: list[tuple[Prompt, list[str]]] = []

    def groups_seen(groups: Sequence[Group]) -> list[list[float]]:
        seen.extend((p, list(a)) for p, a in groups)
        return per_answer(_words)(groups)

    score = flat(groups_seen, 2)
    out = score(["p", "p", "q", "q"], ["a", "a b", "a b c", "x"])

    assert out == [1.0, 2.0, 3.0, 1.0]
    assert seen == [("p", ["a", "a b"]), ("q", ["a b c", "x"])]
    with pytest.raises(ValueError, match="share one prompt"):
        score(["p", "q"], ["a", "b"])
    with pytest.raises(ValueError, match="groups of 2"):
        score(["p"], ["a"])


def test_the_gate_ranks_each_prompts_new_answers_against_its_old_ones() -> None:
    judge = _simulated()
    prompts = ["p1", "p1", "p2", "p2"]  # 2 samples per prompt
    new = ["short", "tiny", "one", "two"]
    old = ["a much longer answer", "another long answer here", "long long long", "x y z w"]

    new_scores, old_scores = versus(judge, prompts, new, old, samples_per_prompt=2)

    assert len(new_scores) == len(old_scores) == 4
    assert min(new_scores) > max(old_scores)  # compared with each other, not apart
    # A scorer per answer gives what scoring each apart would.
    assert versus(per_answer(_words), prompts, new, old, samples_per_prompt=2) == (
        _words(prompts, new),
        _words(prompts, old),
    )


def test_a_group_the_judge_cannot_parse_scores_zero_and_is_counted() -> None:
    class Malformed:
        def judge(self, item: JudgeInput) -> Verdict:
            raise MalformedOutput("no RANKING line", attempts=3)

    reward = JudgeReward(Malformed(), guidelines="", scores_answers=False)

    assert reward([("p", ["a", "b"]), ("q", ["c", "d"])]) == [[0.0, 0.0], [0.0, 0.0]]
    assert (reward.malformed, reward.groups) == (2, 2)


def test_a_logprob_judge_scores_each_answer_by_its_yes_margin(tiny_model_dir: Path) -> None:
    spec = JudgeSpec(
        backend="hf", model=str(tiny_model_dir), method="logprob", prompt_template="",
        principles=["Be brief."],
    )  # fmt: skip
    judge = make_judge(spec)
    reward = JudgeReward(judge, guidelines="Answer briefly.", scores_answers=True)
    answers = ["Tea.", "Boil water, add the leaves, wait four minutes.", "No."]

    [scores] = reward([("How do I make tea?", answers)])

    item = JudgeInput("How do I make tea?", list(enumerate(answers)), "Answer briefly.")
    verdict = judge.judge(item)  # the same margins order the judge's own ranking
    best_first = [i for tied in verdict.groups for i in tied]
    assert len(scores) == 3
    assert sorted(range(3), key=lambda i: -scores[i]) == best_first
    assert len(set(scores)) > 1  # per answer, not a group's centred ranks


# A stage scored by a judge -------------------------------------------------------------------


@pytest.mark.slow
def test_grpo_scored_by_a_simulated_judge_moves_toward_its_preference(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    base = load_causal_lm(str(tiny_model_dir), device="cpu")
    judge, truth = _simulated(agreement=1.0), load_preference(SHORTER)
    scored = flat(judge, STAGE["group_size"])
    true_scores: list[float] = []  # the judge's preference of each step's rollouts

    def score(prompts: list[Prompt], responses: list[str]) -> list[float]:
        true_scores.append(statistics.fmean(truth(r) for r in responses))
        return scored(prompts, responses)

    result = train_grpo(base, tokenizer, PROMPTS, score, GRPOConfig(**STAGE), out_dir=tmp_path)

    assert len(true_scores) == STAGE["steps"]
    assert statistics.fmean(true_scores[-3:]) > statistics.fmean(true_scores[:3]) + 0.5
    # centred per group: the stage's "score" is the judge's Borda score, mean 0
    assert all(abs(m["score"]) < 1e-5 for m in result.metrics_per_step)
    assert result.final["kl_within_bound"] is True
    assert judge.groups == STAGE["steps"] * STAGE["batch_size"]
    assert judge.malformed == 0


@pytest.mark.slow
def test_ppo_runs_scored_by_a_logprob_judge_one_answer_at_a_time(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    spec = JudgeSpec(
        backend="hf", model=str(tiny_model_dir), method="logprob", prompt_template="",
        principles=[],
    )  # fmt: skip
    reward = JudgeReward(make_judge(spec), guidelines="", scores_answers=True)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    base = load_causal_lm(str(tiny_model_dir), device="cpu")
    config = PPOConfig(
        steps=2, batch_size=4, mini_batch_size=4, max_new_tokens=6, seed=0, device="cpu",
        missing_eos_penalty=None,
    )  # fmt: skip

    result = train_ppo(base, tokenizer, PROMPTS[:4], flat(reward, 1), config, out_dir=tmp_path)

    assert reward.groups == 2 * 4  # one group of one answer per rollout
    assert all(math.isfinite(m["score"]) and m["score"] != 0.0 for m in result.metrics_per_step)
    assert (tmp_path / "policy").is_dir()

"""A judge as the reward: the round setting that puts a project's model judge where the trained
reward model was (reward_ppo, reward_rloo, reward_grpo), and what a round start checks about it.

With `reward_judge_id` set the round trains no reward model: the judge scores the policy's
rollouts and the gate's samples (docs/training-notes.md §Critic-free rounds, "A judge as the
reward"). The worker side is worker/jobs/judge_reward.py and worker/training/judge_reward.py.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from sqlalchemy.orm import Session

from app.models import Judge, Project
from app.rounds.schemas import StrictModel


class JudgeRewardSettings(StrictModel):
    reward_judge_id: Annotated[
        int | None,
        Field(
            ge=1,
            description="A judge of this project (its id) scores the rollouts instead of a "
            "trained reward model; no reward model is trained (blank: the reward model).",
        ),
    ] = None


def scores_answers(*, backend: str, method: str) -> bool:
    """Whether a judge gives each answer a score of its own (a local model's log P(Yes) −
    log P(No)); the others give an ordering of a prompt's answers, which needs a group."""
    return backend == "hf" and method == "logprob"


def judge_problems(
    session: Session, project: Project, *, round_type: str, config: dict[str, Any]
) -> list[dict[str, str]]:
    """Why the round's `reward_judge_id` cannot be its reward: unknown, another project's,
    paused, or a ranking judge on PPO (one answer per prompt leaves nothing to rank)."""
    judge_id = config.get("reward_judge_id")
    if judge_id is None:
        return []
    field = "reward_judge_id"
    judge = session.get(Judge, judge_id)
    if judge is None or judge.project_id != project.id:
        return [{"field": field, "message": f"the project has no judge {judge_id}"}]
    if judge.state != "active":
        why = f" ({judge.paused_reason})" if judge.paused_reason else ""
        return [
            {
                "field": field,
                "message": f"the judge {judge.name!r} is paused{why}: resume it on the "
                "judges page first",
            }
        ]
    ranks = not scores_answers(backend=judge.backend, method=judge.method)
    if round_type == "reward_ppo" and ranks:
        return [
            {
                "field": field,
                "message": "PPO needs a judge that scores answers (a local 'hf' judge with "
                f"method logprob); {judge.name!r} ranks ({judge.backend}, {judge.method}): use "
                "it with reward_rloo or reward_grpo, whose K answers per prompt it can rank",
            }
        ]
    return []

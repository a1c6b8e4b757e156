"""A judge as a round's reward (app/rounds/judge_reward.py): the stage steps that read the
judge from the database. The scoring itself is worker/training/judge_reward.py.

- The reward-model stage trains nothing and records which judge (and prompt version) scores.
- The policy trainers score rollouts with `round_judge` (worker/jobs/round_trainers.py).
- The gate scores both versions' held-out answers with the same judge (`gate_scores`), each
  prompt's new and old answers in one group so a ranking judge compares them.

The judge is loaded in the worker process as the judging queue loads it (an 'openai' judge's
key from the worker's environment variable named on the judge; never stored).
"""

from __future__ import annotations

from typing import Any

from app.db import session_scope
from app.models import Judge as JudgeRow
from app.models import Project
from app.rounds import service
from app.rounds.judge_reward import scores_answers
from app.rounds.service import StageStart
from worker.jobs.judging import judge_spec
from worker.training.judge_reward import JudgeReward


def judge_lineage(row: JudgeRow) -> dict[str, Any]:
    """What a version records of the judge that was its reward."""
    return {
        "id": row.id,
        "name": row.name,
        "backend": row.backend,
        "model": row.model,
        "method": row.method,
        "prompt_version": row.prompt_version,
    }


def round_judge(judge_id: int, project_id: int) -> tuple[JudgeReward, dict[str, Any]]:
    """The round's judge as a GroupScorer, and its lineage. ValueError (the round fails with
    it) when it left the project, was paused since the round started, or its key's variable
    is missing on this worker."""
    from worker.judging import make_judge

    with session_scope(readonly=True) as session:
        row = session.get(JudgeRow, judge_id)
        project = session.get(Project, project_id)
        assert project is not None
        if row is None or row.project_id != project_id:
            raise ValueError(f"The round's judge {judge_id} is no longer in the project")
        if row.state != "active":
            raise ValueError(
                f"The round's judge {row.name!r} was paused: {row.paused_reason or 'by an admin'}"
            )
        spec = judge_spec(row)
        lineage = judge_lineage(row)
        per_answer = scores_answers(backend=row.backend, method=row.method)
        guidelines = project.guidelines
    if isinstance(spec, str):
        raise ValueError(f"The round's judge {lineage['name']!r} cannot run: {spec}")
    return JudgeReward(make_judge(spec), guidelines, per_answer), lineage


def skip_reward_model(start: StageStart, judge_id: int) -> None:
    """The reward-model stage of a round whose reward is a judge: nothing to train; the round
    records the judge (its prompt version too) and why no reward model was trained."""
    with session_scope(readonly=True) as session:
        row = session.get(JudgeRow, judge_id)
        if row is None or row.project_id != start.project_id:
            raise ValueError(f"The round's judge {judge_id} is no longer in the project")
        lineage = judge_lineage(row)
    with session_scope() as session:
        service.set_summary(session, start.round_id, "reward_judge", lineage)
        service.set_summary(
            session,
            start.round_id,
            "reward_model_skipped",
            f"judge {lineage['name']!r} (id {judge_id}, prompt version "
            f"{lineage['prompt_version']}) is the reward: no reward model trained",
        )

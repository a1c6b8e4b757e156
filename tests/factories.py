"""Factories with overrides: each returns a flushed ORM object with sensible defaults."""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from sqlalchemy.orm import Session

from app.accounts import service as accounts
from app.models import (
    Judge,
    PolicyKind,
    PolicyStatus,
    PolicyVersion,
    Project,
    Prompt,
    RankingTask,
    Role,
    Sample,
    TaskSample,
    TrainingRound,
    User,
)
from app.projects import service as projects

_counter = itertools.count(1)
PASSWORD = "correct horse battery"


def make_user(session: Session, *, role: Role = Role.annotator, **overrides: Any) -> User:
    username = overrides.pop("username", f"user{next(_counter)}")
    password = overrides.pop("password", PASSWORD)
    user = accounts.create_user(session, username=username, password=password, role=role)
    for key, value in overrides.items():
        setattr(user, key, value)
    session.flush()
    return user


def make_project(session: Session, **overrides: Any) -> Project:
    name = overrides.pop("name", f"project {next(_counter)}")
    base_model = overrides.pop("base_model", "tiny")
    return projects.create_project(session, name=name, base_model=base_model, **overrides)


def make_model_project(session: Session, model: object, **overrides: Any) -> Project:
    """A project on a local model (the tiny one the workers build), with 4 samples a prompt."""
    return make_project(session, **{"base_model": str(model), "samples_per_prompt": 4, **overrides})


def base_version(session: Session, project: Project) -> PolicyVersion:
    from sqlalchemy import select

    return session.scalars(
        select(PolicyVersion).where(
            PolicyVersion.project_id == project.id, PolicyVersion.number == 1
        )
    ).one()


def _next_number(session: Session, model: Any, project: Project) -> int:
    """The project's next number for a numbered row (versions, rounds): one past the highest."""
    from sqlalchemy import func, select

    highest = session.scalar(select(func.max(model.number)).where(model.project_id == project.id))
    return (highest or 0) + 1


def make_version(session: Session, project: Project, **overrides: Any) -> PolicyVersion:
    number = _next_number(session, PolicyVersion, project)
    fields: dict[str, Any] = {
        "project_id": project.id,
        "number": number,
        "kind": PolicyKind.external,
        "status": PolicyStatus.candidate,
        "name": f"v{number}",
    }
    fields.update(overrides)
    version = PolicyVersion(**fields)
    session.add(version)
    session.flush()
    return version


def make_trained_version(
    session: Session, project: Project, parent: PolicyVersion, **overrides: Any
) -> PolicyVersion:
    """A trained candidate version on top of `parent` (other fields as make_version's)."""
    fields: dict[str, Any] = {
        "kind": PolicyKind.trained,
        "status": PolicyStatus.candidate,
        "parent_id": parent.id,
    }
    return make_version(session, project, **{**fields, **overrides})


def make_prompt(session: Session, project: Project, text: str | None = None) -> Prompt:
    text = text or f"Prompt number {next(_counter)}?"
    return projects.add_prompts(session, project_id=project.id, contents=[text]).added[0]


def make_task(
    session: Session,
    project: Project,
    *,
    k: int | None = None,
    texts: list[str] | None = None,
    version: PolicyVersion | None = None,
    prompt: Prompt | None = None,
) -> RankingTask:
    """A task over k fresh samples of one prompt (texts override the generated ones)."""
    k = k or project.samples_per_prompt
    texts = texts or [f"Answer {i} #{next(_counter)}" for i in range(k)]
    version = version or base_version(session, project)
    prompt = prompt or make_prompt(session, project)
    return task_of(session, project, prompt, make_samples(session, prompt, version, texts))


def make_samples(
    session: Session, prompt: Prompt, version: PolicyVersion, texts: list[str]
) -> list[Sample]:
    """One flushed sample of `version` per text, for `prompt`."""
    samples = [
        Sample(
            project_id=prompt.project_id,
            prompt_id=prompt.id,
            policy_version_id=version.id,
            ordinal=next(_counter),
            text=t,
        )
        for t in texts
    ]
    session.add_all(samples)
    session.flush()
    return samples


def task_of(
    session: Session, project: Project, prompt: Prompt, samples: list[Sample]
) -> RankingTask:
    """A task of `prompt` that shows `samples` in this order."""
    task = RankingTask(
        project_id=project.id,
        prompt_id=prompt.id,
        required_annotations=project.annotations_per_task,
    )
    session.add(task)
    session.flush()
    session.add_all(
        TaskSample(task_id=task.id, sample_id=s.id, position=i) for i, s in enumerate(samples)
    )
    session.flush()
    return task


def make_ranking(session: Session, task: RankingTask, user: User, groups: list[list[int]]) -> Any:
    """A stored ranking with its comparisons (derived by the real pair function)."""
    from app.models import Ranking

    ranking = Ranking(project_id=task.project_id, task_id=task.id, user_id=user.id, groups=groups)
    session.add(ranking)
    session.flush()
    add_comparisons(session, ranking, task)
    task.annotations_done += 1
    session.flush()
    return ranking


def add_comparisons(session: Session, ranking: Any, task: RankingTask, **fields: Any) -> None:
    """The comparisons of a stored ranking, derived by the real pair function (`fields`, such
    as created_at, go to each)."""
    from app.models import Comparison
    from app.ratings.pairs import ranking_to_pairs

    groups = ranking.groups
    version_of = {
        s.id: s.policy_version_id
        for s in session.query(Sample).filter(Sample.id.in_([i for g in groups for i in g]))
    }
    shared = {
        "project_id": task.project_id,
        "ranking_id": ranking.id,
        "task_id": task.id,
        "prompt_id": task.prompt_id,
        "user_id": ranking.user_id,
        **fields,
    }
    session.add_all(
        Comparison(
            winner_id=pair.winner,
            loser_id=pair.loser,
            winner_version_id=version_of[pair.winner],
            loser_version_id=version_of[pair.loser],
            tie=pair.tie,
            **shared,
        )
        for pair in ranking_to_pairs(groups)
    )


def task_sample_ids(session: Session, task: RankingTask) -> list[int]:
    from sqlalchemy import select

    return list(
        session.scalars(
            select(TaskSample.sample_id)
            .where(TaskSample.task_id == task.id)
            .order_by(TaskSample.position)
        )
    )


def task_shows(session: Session, task_id: int, what: Any = Sample) -> list[Any]:
    """The samples a task shows, or one column of them (`Sample.text`, ...)."""
    from sqlalchemy import select

    joined = select(what).join(TaskSample, TaskSample.sample_id == Sample.id)
    return list(session.scalars(joined.where(TaskSample.task_id == task_id)))


def job_tasks(session: Session, job_id: int) -> list[RankingTask]:
    """The tasks a sampling job made."""
    from sqlalchemy import select

    return list(session.scalars(select(RankingTask).where(RankingTask.sampling_job_id == job_id)))


def make_current_version(
    session: Session, project: Project, **overrides: Any
) -> tuple[PolicyVersion, PolicyVersion]:
    """Retires the base version and makes a version trained from it current: (base, new)."""
    base = base_version(session, project)
    base.status = PolicyStatus.retired
    session.flush()
    trained = {"kind": PolicyKind.trained, "status": PolicyStatus.current, "parent_id": base.id}
    return base, make_version(session, project, **{**trained, **overrides})


def make_ready_project(
    session: Session,
    *,
    prompts: int = 8,
    rankings: int = 4,
    demonstrations: int = 4,
    **overrides: Any,
) -> Project:
    """A project any round type may start on (`app.rounds.preconditions`): the tiny model the
    workers build, `prompts` active prompts, strict rankings of the first `rankings` of them
    and demonstrations for the first `demonstrations`."""
    from app.projects.demonstration_import import ParsedDemonstration
    from app.projects.demonstrations import add_demonstrations

    project = make_project(session, **overrides)
    added = projects.add_prompts(
        session,
        project_id=project.id,
        contents=[f"Ready prompt {i} #{next(_counter)}?" for i in range(prompts)],
    ).added
    annotator = make_user(session)
    for prompt in added[:rankings]:
        task = make_task(session, project, prompt=prompt)
        make_ranking(session, task, annotator, [[sid] for sid in task_sample_ids(session, task)])
    add_demonstrations(
        session,
        project_id=project.id,
        demonstrations=[
            ParsedDemonstration(
                prompt=p.text, response=f"A good answer to {p.text}", source="plain", line=i
            )
            for i, p in enumerate(added[:demonstrations])
        ],
    )
    return project


def start_ready_round(
    session: Session, round_type: str, **options: Any
) -> tuple[Project, TrainingRound]:
    """A round of `round_type` started through the service (not enqueued) on a new
    make_ready_project: (project, round). `options` go to start_round (config=...)."""
    from app.rounds import service as rounds

    project = make_ready_project(session)
    return project, rounds.start_round(
        session, project_id=project.id, round_type=round_type, enqueue=False, **options
    )


def make_round(session: Session, project: Project, round_type: str = "dpo", **fields: Any) -> Any:
    """A queued round row with its type's default config, made directly (no preconditions):
    for tests about what is shown or exported, not about starting rounds."""
    from app.models import RoundType, TrainingRound
    from app.rounds.service import parse_config

    number = _next_number(session, TrainingRound, project)
    values: dict[str, Any] = {
        "project_id": project.id,
        "number": number,
        "type": RoundType(round_type),
        "config": {**parse_config(round_type, {}), "seed": 0},
        "base_policy_version_id": base_version(session, project).id,
        "progress": {"stage": "queued"},
        "metrics": {},
    }
    values.update(fields)
    training_round = TrainingRound(**values)
    session.add(training_round)
    session.flush()
    return training_round


def make_judge(
    session: Session, project_id: int, *, preference: str = "length:30", **fields: Any
) -> Judge:
    """A judge made through the service: simulated, always of its `preference`'s mind
    (agreement 1.0, seed 0), no position checks, a new name; `fields` override any of it."""
    from app.judges import service as judges
    from app.judges.schemas import JudgeCreate

    data = {
        "name": f"judge {secrets.token_hex(3)}",
        "backend": "simulated",
        "model": "simulated",
        "options": {"preference": preference, "agreement": 1.0, "seed": 0},
        "position_check_share": 0.0,
        **fields,
    }
    return judges.create_judge(
        session, project_id=project_id, data=JudgeCreate(**data), created_by_id=None
    )


def make_ai_ranking(
    session: Session, task: RankingTask, judge_user: User, groups: list[list[int]], **fields: Any
) -> Any:
    """A judge's stored ranking: the ranking and its comparisons marked source 'ai'."""
    from app.models import Ranking

    ranking = Ranking(
        project_id=task.project_id,
        task_id=task.id,
        user_id=judge_user.id,
        groups=groups,
        source="ai",
        **fields,
    )
    session.add(ranking)
    session.flush()
    add_comparisons(session, ranking, task, source="ai")
    session.flush()
    return ranking


def make_judge_ranking(
    session: Session, judge: Judge, task: RankingTask, groups: list[list[int]], **fields: Any
) -> Any:
    """A stored judge ranking as record_judgement writes one: make_ai_ranking as the judge's
    user, of its prompt version (`fields`, such as display_order, go to the ranking)."""
    user = session.get(User, judge.user_id)
    assert user is not None
    return make_ai_ranking(
        session,
        task,
        user,
        groups,
        judge_id=judge.id,
        judge_prompt_version=judge.prompt_version,
        **fields,
    )

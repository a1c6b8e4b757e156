"""Sample upload: external versions, samples and ranking tasks from any model's outputs."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import PolicyKind, PolicyStatus, PolicyVersion, RankingTask, Sample, TaskSample
from app.projects.sample_upload import parse_sample_file, upload_sample_file
from tests.factories import make_project


def line(prompt: Any, n: int, model: str = "gpt-x", prefix: str = "answer") -> dict[str, Any]:
    return {"prompt": prompt, "samples": [f"{prefix} {i}" for i in range(n)], "model": model}


def jsonl(*lines: dict[str, Any]) -> bytes:
    return "\n".join(json.dumps(x) for x in lines).encode()


def task_samples(session: Session, project_id: int) -> list[list[tuple[str, str]]]:
    """Each task's (model, text) pairs by position, tasks in id order."""
    rows = session.execute(
        select(RankingTask.id, PolicyVersion.name, Sample.text)
        .join(TaskSample, TaskSample.task_id == RankingTask.id)
        .join(Sample, Sample.id == TaskSample.sample_id)
        .join(PolicyVersion, PolicyVersion.id == Sample.policy_version_id)
        .where(RankingTask.project_id == project_id)
        .order_by(RankingTask.id, TaskSample.position)
    )
    tasks: dict[int, list[tuple[str, str]]] = {}
    for task_id, model, text in rows:
        tasks.setdefault(task_id, []).append((model, text))
    return list(tasks.values())


def upload(session: Session, project_id: int, data: bytes, **kwargs: Any):  # type: ignore[no-untyped-def]
    return upload_sample_file(
        session, project_id=project_id, data=data, filename="samples.jsonl", **kwargs
    )


def test_upload_creates_an_external_version_samples_and_a_task(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=4, annotations_per_task=3)

    report = upload(db_session, project.id, jsonl(line("Say hi", 4)))

    assert report.result is not None
    assert report.result.versions_added == ["gpt-x"]
    assert (report.result.samples_added, report.result.tasks_added) == (4, 1)
    version = db_session.scalars(
        select(PolicyVersion).where(PolicyVersion.kind == PolicyKind.external)
    ).one()
    assert (version.number, version.status, version.name) == (2, PolicyStatus.candidate, "gpt-x")
    ordinals = db_session.scalars(
        select(Sample.ordinal).where(Sample.policy_version_id == version.id).order_by(Sample.id)
    )
    assert list(ordinals) == [0, 1, 2, 3]
    task = db_session.scalars(select(RankingTask)).one()
    assert task.required_annotations == 3
    assert task_samples(db_session, project.id) == [[("gpt-x", f"answer {i}") for i in range(4)]]


def test_uploading_the_same_file_twice_adds_nothing(db_session: Session) -> None:
    project = make_project(db_session)
    data = jsonl(line("A", 4), line("B", 6), line("A", 4, model="llama"))
    upload(db_session, project.id, data)

    again = upload(db_session, project.id, data)

    assert again.result is not None
    assert again.result.prompts_added == 0
    assert again.result.versions_added == []
    assert (again.result.samples_added, again.result.samples_existing) == (0, 14)
    assert again.result.tasks_added == 0
    assert db_session.scalar(select(func.count()).select_from(Sample)) == 14


def test_more_samples_than_k_make_ceil_n_over_k_tasks_using_every_sample(
    db_session: Session,
) -> None:
    project = make_project(db_session, samples_per_prompt=4)

    report = upload(db_session, project.id, jsonl(line("P", 6)))

    assert report.result is not None
    assert report.result.tasks_added == 2
    first, second = task_samples(db_session, project.id)
    assert [t for _, t in first] == ["answer 0", "answer 1", "answer 2", "answer 3"]
    assert [t for _, t in second] == ["answer 4", "answer 5", "answer 0", "answer 1"]


def test_two_models_for_one_prompt_are_mixed_in_each_task(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=4)

    upload(db_session, project.id, jsonl(line("P", 4, "a"), line("P", 4, "b")))

    tasks = task_samples(db_session, project.id)
    assert [[m for m, _ in t] for t in tasks] == [["a", "b", "a", "b"], ["a", "b", "a", "b"]]


def test_fewer_samples_than_k_make_one_task_of_them_all(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=6)

    upload(db_session, project.id, jsonl(line("P", 5)))

    (task,) = task_samples(db_session, project.id)
    assert len(task) == 5


def test_a_model_keeps_its_version_and_a_new_model_gets_the_next_number(
    db_session: Session,
) -> None:
    project = make_project(db_session)
    upload(db_session, project.id, jsonl(line("P", 4, "a")))

    upload(db_session, project.id, jsonl(line("Q", 4, "a"), line("Q", 4, "b", prefix="other")))

    versions = db_session.scalars(
        select(PolicyVersion.name)
        .where(PolicyVersion.project_id == project.id)
        .order_by(PolicyVersion.number)
    )
    assert list(versions) == ["base", "a", "b"]


def test_new_samples_for_a_known_prompt_and_model_are_numbered_after_the_old(
    db_session: Session,
) -> None:
    project = make_project(db_session)
    upload(db_session, project.id, jsonl(line("P", 4)))

    upload(db_session, project.id, jsonl(line("P", 4, prefix="more")))

    ordinals = db_session.scalars(
        select(Sample.ordinal).where(Sample.text.like("more%")).order_by(Sample.ordinal)
    )
    assert list(ordinals) == [4, 5, 6, 7]
    assert len(task_samples(db_session, project.id)) == 2


def test_a_file_with_bad_lines_stores_nothing_by_default(db_session: Session) -> None:
    project = make_project(db_session)
    data = jsonl(line("ok", 4), line("too few", 3))

    report = upload(db_session, project.id, data)

    assert report.result is None
    assert [(e.line, e.message) for e in report.parsed.errors] == [
        (2, "a line needs 4 to 64 samples, got 3")
    ]
    assert db_session.scalar(select(func.count()).select_from(Sample)) == 0


def test_import_valid_stores_the_good_lines_of_a_file_with_bad_ones(db_session: Session) -> None:
    project = make_project(db_session)
    data = jsonl(line("ok", 4), line("too few", 3))

    report = upload(db_session, project.id, data, import_valid=True)

    assert report.result is not None
    assert report.result.samples_added == 4


def test_sample_lines_report_each_problem_with_its_line_number() -> None:
    data = b"\n".join(
        [
            json.dumps(line("fine", 4)).encode(),
            b'{"prompt": "x", "samples": "not a list", "model": "m"}',
            b'{"prompt": "x", "samples": ["a", "b", "c", 4], "model": "m"}',
            b'{"samples": ["a", "b", "c", "d"], "model": "m"}',
            b'{"prompt": "x", "samples": ["a", "b", "c", "d"]}',
            b"{oops",
        ]
    )

    parsed = parse_sample_file(data, "s.jsonl")

    assert [x.line for x in parsed.lines] == [1]
    assert [(e.line, e.message) for e in parsed.errors] == [
        (2, "'samples' must be a list of strings"),
        (3, "'samples' must be a list of strings"),
        (4, "missing field 'prompt'"),
        (5, "missing field 'model' (or give a model name in the form)"),
        (6, "invalid JSON: Expecting property name enclosed in double quotes (column 2)"),
    ]


def test_the_form_model_name_fills_lines_without_one() -> None:
    data = b'{"prompt": "x", "samples": ["a", "b", "c", "d"]}'

    parsed = parse_sample_file(data, "s.jsonl", default_model="my-model")

    assert parsed.lines[0].model == "my-model"

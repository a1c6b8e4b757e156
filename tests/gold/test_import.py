"""The sample upload's gold column: a line with "gold" or "gold_bad" makes one gold task."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import RankingTask, Sample
from app.projects.sample_upload import upload_sample_file
from tests.factories import make_project, task_sample_ids


def _upload(session: Session, project_id: int, *lines: dict[str, Any]) -> Any:
    data = "\n".join(json.dumps(line) for line in lines).encode()
    return upload_sample_file(session, project_id=project_id, data=data, filename="s.jsonl")


def _line(prompt: str, n: int = 4, **extra: Any) -> dict[str, Any]:
    return {"prompt": prompt, "samples": [f"{prompt} {i}" for i in range(n)], "model": "m", **extra}


def _texts(session: Session, ids: list[int]) -> dict[int, str]:
    return dict(session.execute(select(Sample.id, Sample.text).where(Sample.id.in_(ids))).all())


def test_a_gold_line_makes_one_gold_task_with_its_ordering(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=4)

    report = _upload(
        db_session,
        project.id,
        _line("plain"),
        _line("known", gold=[[2], [0, 3], [1]]),
        _line("bad", gold_bad=1),
    )

    assert report.result is not None
    assert (report.result.tasks_added, report.result.gold_tasks_added) == (3, 2)
    tasks = list(db_session.scalars(select(RankingTask).order_by(RankingTask.id)))
    [plain] = [t for t in tasks if not t.gold]
    [known] = [t for t in tasks if t.gold_groups is not None]
    [bad] = [t for t in tasks if t.gold_bad_sample_id is not None]
    assert plain.gold is False
    texts = _texts(db_session, task_sample_ids(db_session, known))
    assert known.gold_groups is not None
    assert [[texts[i] for i in group] for group in known.gold_groups] == [
        ["known 2"],
        ["known 0", "known 3"],
        ["known 1"],
    ]
    bad_texts = _texts(db_session, task_sample_ids(db_session, bad))
    assert bad.gold_bad_sample_id is not None
    assert bad_texts[bad.gold_bad_sample_id] == "bad 1"


def test_uploading_a_gold_file_twice_makes_its_gold_task_once(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    _upload(db_session, project.id, _line("known", gold_bad=0))

    again = _upload(db_session, project.id, _line("known", gold_bad=0))

    assert again.result is not None
    assert again.result.tasks_added == 0
    assert len(db_session.scalars(select(RankingTask)).all()) == 1


def test_bad_gold_lines_are_refused_with_a_clear_message(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    cases = {
        "exactly 4 samples": _line("five", n=5, gold_bad=0),
        "not both": _line("both", gold=[[0], [1], [2], [3]], gold_bad=0),
        "index of one of the samples": _line("range", gold_bad=4),
        "missing": _line("partial", gold=[[0], [1]]),
        "more than once": _line("twice", gold=[[0, 0], [1], [2], [3]]),
        "lists of sample indices": _line("shape", gold=[0, 1, 2, 3]),
        "ties every sample": _line("tied", gold=[[0, 1, 2, 3]]),
    }

    report = _upload(db_session, project.id, *cases.values())

    assert report.result is None  # nothing stored
    messages = [error.message for error in report.parsed.errors]
    assert len(messages) == len(cases)
    for expected, message in zip(cases, messages, strict=True):
        assert expected in message, message
    assert db_session.scalars(select(RankingTask)).all() == []

"""An annotator cannot tell a gold task from an ordinary one: the page, the next-task JSON and
the submit's answer are the same once ids, times and texts (all digits here) are blanked."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from app.gold import service as gold
from app.models import User
from tests.annotation.conftest import Annotator, best_first, make_member
from tests.factories import make_project, make_task, task_sample_ids


def _blank(text: str) -> str:
    return re.sub(r"\d+", "0", text)


def test_gold_and_normal_tasks_look_the_same_in_html_and_json(
    db_session: Session, log_in: Callable[[User], Annotator]
) -> None:
    project = make_project(db_session, annotations_per_task=1, gold_rate=0.5)
    gold_task = make_task(db_session, project)
    gold.mark_gold(
        db_session,
        project_id=project.id,
        task_id=gold_task.id,
        groups=[[i] for i in task_sample_ids(db_session, gold_task)],
    )
    for _ in range(20):
        make_task(db_session, project)
    annotator = log_in(make_member(db_session, project))

    seen: dict[bool, tuple[dict[str, Any], str, dict[str, Any]]] = {}
    for _ in range(20):
        shown = annotator.next_task()
        page = annotator.http.get("/annotate")
        assert page.status_code == 200
        task = shown["task"]
        is_gold = task["id"] == gold_task.id
        if is_gold not in seen:
            submitted = annotator.submit(task["id"], {"groups": best_first(task)})
            assert submitted.status_code == 200, submitted.text
            seen[is_gold] = (shown, page.text, submitted.json())
        else:
            assert annotator.post(f"/annotate/tasks/{task['id']}/skip").status_code == 200
        if len(seen) == 2:
            break

    assert set(seen) == {True, False}
    (gold_json, gold_html, gold_submit), (normal_json, normal_html, normal_submit) = (
        seen[True],
        seen[False],
    )
    # the counters differ by the first submit; compare what the task itself shows
    gold_json.pop("counts"), normal_json.pop("counts")
    gold_submit.pop("counts"), normal_submit.pop("counts")
    assert _blank(json.dumps(gold_json)) == _blank(json.dumps(normal_json))
    assert _blank(json.dumps(gold_submit)) == _blank(json.dumps(normal_submit))
    assert _blank(gold_html) == _blank(normal_html)
    assert "gold" not in gold_html.lower()

"""Projects, imports, rounds and policy versions over /api/v1."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import (
    PolicyKind,
    PolicyVersion,
    Project,
    Prompt,
    RankingTask,
    RoundState,
    Sample,
    TrainingRound,
)
from app.rounds import service as rounds
from tests.api.conftest import RoundsApi, count, post_content
from tests.factories import (
    base_version,
    make_project,
    make_round,
    make_trained_version,
    make_version,
)

# Projects and pagination


def test_projects_are_listed_page_by_page_with_a_cursor(
    client: httpx.Client, db_session: Session, reader: dict[str, str]
) -> None:
    made = [make_project(db_session).id for _ in range(5)]
    db_session.commit()
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/projects", params=params, headers=reader).json()
        assert len(page["items"]) <= 2
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert set(made) <= set(seen)
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize(
    ("params", "field"),
    [({"cursor": "not-a-cursor"}, "cursor"), ({"limit": 0}, "limit"), ({"limit": 500}, "limit")],
)
def test_bad_pagination_is_422_naming_the_field(
    client: httpx.Client, reader: dict[str, str], params: dict[str, Any], field: str
) -> None:
    response = client.get("/api/v1/projects", params=params, headers=reader)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == field


def test_an_unknown_project_is_404_in_the_error_shape(
    client: httpx.Client, reader: dict[str, str]
) -> None:
    response = client.get("/api/v1/projects/987654", headers=reader)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# Prompt import


def test_prompts_import_as_a_json_array(
    client: httpx.Client, db_session: Session, writer: dict[str, str], project: Project
) -> None:
    body = [
        {"instruction": "Name a colour", "input": "", "output": "Blue"},
        {"instruction": "Name a fruit", "input": "", "output": "Pear"},
        {"instruction": "Name a colour", "input": "", "output": "Red"},
    ]
    response = client.post(f"/api/v1/projects/{project.id}/prompts", json=body, headers=writer)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "format": "alpaca",
        "records": 3,
        "added": 2,
        "duplicates": 1,
        "in_project": 0,
        "repeated": 1,
        "too_long": 0,
        "token_budget": None,  # the tiny model is not built here: the worker measures
        "errors": [],
    }
    texts = db_session.scalars(select(Prompt.text).where(Prompt.project_id == project.id))
    assert sorted(texts) == ["Name a colour", "Name a fruit"]


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hello?"},
]


def test_prompts_import_as_ndjson_with_conversations(
    client: httpx.Client, db_session: Session, writer: dict[str, str], project: Project
) -> None:
    lines = [{"prompt": "Plain one"}, {"messages": CONVERSATION}]
    response = post_content(
        client,
        f"/api/v1/projects/{project.id}/prompts",
        "\n".join(json.dumps(x) for x in lines).encode(),
        writer,
    )
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 2
    messages = db_session.scalars(
        select(Prompt.messages).where(Prompt.project_id == project.id, Prompt.text != "Plain one")
    ).one()
    assert messages == CONVERSATION


def test_a_bad_prompt_record_is_422_with_its_line_and_imports_nothing(
    client: httpx.Client, db_session: Session, writer: dict[str, str], project: Project
) -> None:
    body = b'{"prompt": "good"}\n{"prompt": 12}\nnot json\n'
    response = post_content(client, f"/api/v1/projects/{project.id}/prompts", body, writer)
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert [(d["field"], d["line"]) for d in details] == [("body", 2), ("body", 3)]
    assert count(db_session, Prompt, Prompt.project_id == project.id) == 0


def test_skip_invalid_imports_the_good_records_and_reports_the_rest(
    client: httpx.Client, writer: dict[str, str], project: Project
) -> None:
    response = post_content(
        client,
        f"/api/v1/projects/{project.id}/prompts",
        b'{"prompt": "good"}\n{"prompt": 12}\n',
        writer,
        params={"skip_invalid": "true"},
    )
    assert response.status_code == 200
    assert response.json()["added"] == 1
    assert response.json()["errors"][0]["line"] == 2


@pytest.mark.parametrize(
    ("params", "body", "field"),
    [
        ({"format": "excel"}, b'[{"prompt": "x"}]', "format"),
        ({}, b"", "body"),
        ({}, b"[]", "body"),
    ],
)
def test_bad_prompt_requests_are_422_and_change_nothing(
    client: httpx.Client,
    db_session: Session,
    writer: dict[str, str],
    project: Project,
    params: dict[str, str],
    body: bytes,
    field: str,
) -> None:
    url = f"/api/v1/projects/{project.id}/prompts"
    response = post_content(client, url, body, writer, "application/json", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == field
    assert count(db_session, Prompt, Prompt.project_id == project.id) == 0


# Sample import


def test_samples_from_an_outside_model_create_a_version_and_tasks(
    client: httpx.Client, db_session: Session, writer: dict[str, str]
) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    db_session.commit()
    body = [{"prompt": "Say hi", "samples": ["hi", "hello", "hey", "yo"], "model": "gpt-x"}]
    response = client.post(f"/api/v1/projects/{project.id}/samples", json=body, headers=writer)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["versions_added"] == ["gpt-x"]
    assert (result["samples_added"], result["tasks_added"]) == (4, 1)
    again = client.post(f"/api/v1/projects/{project.id}/samples", json=body, headers=writer)
    assert again.json()["samples_added"] == 0
    assert again.json()["tasks_added"] == 0


def test_a_bad_sample_line_is_422_and_stores_nothing(
    client: httpx.Client, db_session: Session, writer: dict[str, str], project: Project
) -> None:
    body = [
        {"prompt": "ok", "samples": ["a", "b", "c", "d"], "model": "m"},
        {"prompt": "too few", "samples": ["a"], "model": "m"},
    ]
    response = client.post(f"/api/v1/projects/{project.id}/samples", json=body, headers=writer)
    assert response.status_code == 422
    detail = response.json()["error"]["details"][0]
    assert detail["field"] == "body"
    assert "4 to 64 samples" in detail["message"]
    assert count(db_session, Sample, Sample.project_id == project.id) == 0
    assert count(db_session, RankingTask, RankingTask.project_id == project.id) == 0
    assert count(db_session, PolicyVersion, PolicyVersion.project_id == project.id) == 1


# Sampling jobs


def test_sampling_jobs_are_listed_newest_first_with_progress_page_by_page(
    client: httpx.Client, db_session: Session, reader: dict[str, str]
) -> None:
    from app.models import JobState
    from app.projects.service import add_prompts
    from app.sampling import service as sampling

    project = make_project(db_session)
    jobs = []
    for i in range(3):
        add_prompts(db_session, project_id=project.id, contents=[f"Sampled {i}?"])
        job = sampling.start_sampling(db_session, project_id=project.id, enqueue=False)
        assert job is not None
        job.state, job.prompts_done = JobState.done, job.prompts_total
        jobs.append(job)
    jobs[-1].state, jobs[-1].prompts_done, jobs[-1].error = JobState.failed, 0, "out of memory"
    db_session.commit()
    url = f"/api/v1/projects/{project.id}/sampling-jobs"

    first = client.get(url, params={"limit": 2}, headers=reader).json()
    rest = client.get(
        url, params={"limit": 2, "cursor": first["next_cursor"]}, headers=reader
    ).json()

    listed = first["items"] + rest["items"]
    assert [j["id"] for j in listed] == [j.id for j in reversed(jobs)]
    assert rest["next_cursor"] is None
    assert (listed[0]["state"], listed[0]["error"]) == ("failed", "out of memory")
    # each job took the prompt no job had tried; done without a task, it counts as skipped
    assert (listed[1]["prompts_done"], listed[1]["prompts_total"]) == (1, 1)
    assert listed[1]["prompts_skipped"] == 1
    assert listed[0]["policy_version"] == 1
    assert client.get("/api/v1/projects/999999/sampling-jobs", headers=reader).status_code == 404


# Rounds


def test_a_round_is_started_listed_read_and_cancelled(
    client: httpx.Client,
    db_session: Session,
    writer: dict[str, str],
    rounds_api: RoundsApi,
    ready_project: Project,
) -> None:
    project = ready_project
    api = rounds_api(project)
    started = api.post({"type": "dpo", "beta": 0.2})
    assert started.status_code == 201, started.text
    detail = started.json()
    assert (detail["type"], detail["state"], detail["number"]) == ("dpo", "queued", 1)
    assert detail["config"]["beta"] == 0.2
    # enqueued once committed; a DPO round first trains the reward model its gate scores with
    assert api.sent_stages == [(detail["id"], "reward_model")]

    listed = client.get(f"/api/v1/projects/{project.id}/rounds", headers=writer).json()
    assert [r["id"] for r in listed["items"]] == [detail["id"]]

    rounds.begin_stage(db_session, detail["id"], "reward_model")
    rounds.record_progress(db_session, detail["id"], step=3, total=10, metrics={"loss": 0.4})
    db_session.commit()
    status = client.get(f"/api/v1/rounds/{detail['id']}", headers=writer).json()
    assert status["progress"]["step"] == 3
    assert status["progress"]["metrics"] == {"loss": 0.4}

    cancelled = client.post(f"/api/v1/rounds/{detail['id']}/cancel", headers=writer)
    assert cancelled.status_code == 200
    assert cancelled.json()["cancel_requested"] is True
    again = api.post({"type": "sft"})
    assert again.status_code == 409  # the first one is still stopping


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "dpo", "beta": -1}, "dpo.beta"),
        ({"type": "magic"}, "body"),  # the whole body: no tag of a known round type
        ({"beta": 0.1}, "type"),
        ({"type": "reward_ppo", "ppo": {"steps": 0}}, "reward_ppo.ppo.steps"),
        ({"type": "sft", "surprise": 1}, "sft.surprise"),
    ],
)
def test_a_bad_round_config_is_422_naming_the_field_and_starts_nothing(
    db_session: Session, rounds_api: RoundsApi, project: Project, body: dict[str, Any], field: str
) -> None:
    api = rounds_api(project)
    response = api.post(body)
    assert response.status_code == 422
    fields = [d["field"] for d in response.json()["error"]["details"]]
    assert field in fields, fields
    assert count(db_session, TrainingRound, TrainingRound.project_id == project.id) == 0
    assert api.sent_stages == []


def test_cancelling_a_finished_round_is_409_and_changes_nothing(
    client: httpx.Client, db_session: Session, writer: dict[str, str], ready_project: Project
) -> None:
    training_round = rounds.start_round(
        db_session, project_id=ready_project.id, round_type="sft", enqueue=False
    )
    rounds.cancel_round(db_session, round_id=training_round.id)
    db_session.commit()
    response = client.post(f"/api/v1/rounds/{training_round.id}/cancel", headers=writer)
    assert response.status_code == 409
    db_session.refresh(training_round)
    assert training_round.state == RoundState.cancelled


def test_a_bad_round_id_is_422(client: httpx.Client, writer: dict[str, str]) -> None:
    response = client.post("/api/v1/rounds/abc/cancel", headers=writer)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "round_id"


# Policy versions


def test_policy_versions_show_their_lineage(
    client: httpx.Client, db_session: Session, reader: dict[str, str]
) -> None:
    project = make_project(db_session)
    base = base_version(db_session, project)
    training_round = make_round(db_session, project, "dpo")
    child = make_trained_version(
        db_session,
        project,
        base,
        round_id=training_round.id,
        base_model="tiny",
        artifact_uri="projects/x/adapter",
        metrics={"kl": 1.5, "merged_adapters": ["projects/x/sft"]},
    )
    grandchild = make_version(db_session, project, kind=PolicyKind.trained, parent_id=child.id)
    db_session.commit()

    listed = client.get(f"/api/v1/projects/{project.id}/policies", headers=reader).json()
    assert [v["id"] for v in listed["items"]] == [grandchild.id, child.id, base.id]
    detail = client.get(f"/api/v1/policies/{child.id}", headers=reader).json()
    assert [v["id"] for v in detail["lineage"]] == [base.id, child.id]
    assert detail["round_id"] == training_round.id
    assert detail["merged_adapters"] == 1
    assert detail["has_adapter"] is True
    assert detail["metrics"] == {"kl": 1.5}
    listed_round = client.get(f"/api/v1/rounds/{training_round.id}", headers=reader).json()
    assert listed_round["policy_version_id"] == child.id
    deep = client.get(f"/api/v1/policies/{grandchild.id}", headers=reader).json()
    assert [v["id"] for v in deep["lineage"]] == [base.id, child.id, grandchild.id]

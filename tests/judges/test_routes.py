"""The judges page and API: admins only, CSRF on forms, bad settings refused with nothing
changed, a key never accepted or shown, progress on the project page."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Judge, Project, Role, User
from tests.factories import make_project, make_task
from tests.helpers import login_new_user

FORM = {
    "name": "local judge",
    "backend": "openai",
    "model": "served-model",
    "base_url": "http://127.0.0.1:9/v1",
    "api_key_env": "JUDGE_KEY",
    "method": "listwise",
    "overlap": "all",
    "share": "1",
    "principles": "Prefer the honest answer.\r\nPrefer the harmless answer.",
    "prompt_template": "",
}
KEY = "sk-proj-AbCdEf0123456789abcdef0123456789"


def _judges(session: Session) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(Judge)) or 0)


def _url(project: Project) -> str:
    return f"/admin/projects/{project.id}/judges"


def test_an_admin_adds_a_judge_from_the_page_and_sees_its_progress(
    client: httpx.Client, db_session: Session
) -> None:
    project = make_project(db_session)
    make_task(db_session, project)
    csrf = login_new_user(client, db_session, "judge-admin", role=Role.admin)
    assert _url(project) in client.get(f"/admin/projects/{project.id}").text
    page = client.get(_url(project))
    assert page.status_code == 200
    assert "The default ranking prompt" in page.text

    added = client.post(_url(project), data={**FORM, "csrf_token": csrf})

    assert added.status_code == 200, added.text
    judge = db_session.scalars(select(Judge)).one()
    assert (judge.name, judge.api_key_env, judge.principles) == (
        "local judge",
        "JUDGE_KEY",
        ["Prefer the honest answer.", "Prefer the harmless answer."],
    )
    progress = client.get(f"{_url(project)}/progress", headers={"HX-Request": "true"})
    assert f'id="judge-progress-{judge.id}"' in progress.text
    assert '<td class="num">1</td>' in progress.text  # one task remaining


def test_a_form_without_the_csrf_token_changes_nothing(
    client: httpx.Client, db_session: Session
) -> None:
    project = make_project(db_session)
    login_new_user(client, db_session, "judge-admin-2", role=Role.admin)
    response = client.post(_url(project), data=FORM)
    assert response.status_code == 403
    assert _judges(db_session) == 0


def test_annotators_cannot_see_or_add_judges(client: httpx.Client, db_session: Session) -> None:
    project = make_project(db_session)
    csrf = login_new_user(client, db_session, "judge-annotator", role=Role.annotator)
    assert client.get(_url(project)).status_code == 403
    assert client.post(_url(project), data={**FORM, "csrf_token": csrf}).status_code == 403
    assert _judges(db_session) == 0


def test_a_key_pasted_into_the_form_is_refused_and_never_shown(
    client: httpx.Client, db_session: Session
) -> None:
    project = make_project(db_session)
    csrf = login_new_user(client, db_session, "judge-admin-3", role=Role.admin)
    response = client.post(_url(project), data={**FORM, "api_key_env": KEY, "csrf_token": csrf})
    assert response.status_code == 422
    assert "environment variable" in response.text
    assert KEY not in response.text
    assert _judges(db_session) == 0


def test_bad_settings_from_the_form_are_422_and_change_nothing(
    client: httpx.Client, db_session: Session
) -> None:
    project = make_project(db_session)
    csrf = login_new_user(client, db_session, "judge-admin-4", role=Role.admin)
    for bad in (
        {"base_url": ""},
        {"base_url": "file:///etc/passwd"},
        {"share": "1.5"},
        {"backend": "gpt"},
        {"options": "[1, 2"},
    ):
        response = client.post(_url(project), data={**FORM, **bad, "csrf_token": csrf})
        assert response.status_code == 422, bad
    assert _judges(db_session) == 0


def test_pause_edit_and_resume_from_the_page(client: httpx.Client, db_session: Session) -> None:
    project = make_project(db_session)
    csrf = login_new_user(client, db_session, "judge-admin-5", role=Role.admin)
    client.post(_url(project), data={**FORM, "csrf_token": csrf})
    judge = db_session.scalars(select(Judge)).one()

    paused = client.post(
        f"{_url(project)}/{judge.id}/pause", data={"reason": "too slow", "csrf_token": csrf}
    )
    assert paused.status_code == 200
    assert "too slow" in paused.text
    edited = client.post(
        f"{_url(project)}/{judge.id}",
        data={**FORM, "prompt_template": "Rank {samples}", "csrf_token": csrf},
    )
    assert edited.status_code == 200, edited.text
    assert "prompt version 2" in edited.text
    assert f'id="judge-measures-{judge.id}"' in edited.text
    resumed = client.post(f"{_url(project)}/{judge.id}/resume", data={"csrf_token": csrf})
    assert resumed.status_code == 200
    db_session.expire_all()
    judge = db_session.get(Judge, judge.id)
    assert judge is not None
    assert (judge.state, judge.paused_reason, judge.prompt_version) == ("active", None, 2)


def test_a_judge_of_another_project_is_not_found_there(
    client: httpx.Client, db_session: Session
) -> None:
    project, other = make_project(db_session), make_project(db_session)
    csrf = login_new_user(client, db_session, "judge-admin-6", role=Role.admin)
    client.post(_url(project), data={**FORM, "csrf_token": csrf})
    judge = db_session.scalars(select(Judge)).one()
    response = client.post(f"{_url(other)}/{judge.id}/pause", data={"csrf_token": csrf})
    assert response.status_code == 404


def test_judges_are_not_listed_as_people(client: httpx.Client, db_session: Session) -> None:
    project = make_project(db_session)
    csrf = login_new_user(client, db_session, "judge-admin-7", role=Role.admin)
    client.post(_url(project), data={**FORM, "csrf_token": csrf})
    judge_user = db_session.scalars(select(User).where(User.kind == "model")).one()
    users = client.get("/admin/users")
    assert users.status_code == 200
    assert judge_user.username not in users.text


# API


def test_the_api_adds_reads_edits_pauses_and_resumes_a_judge(
    client: httpx.Client, db_session: Session, writer: dict[str, str]
) -> None:
    project = make_project(db_session)
    db_session.commit()
    body = {
        "name": "api judge",
        "backend": "hf",
        "model": "tiny",
        "method": "logprob",
        "principles": ["Be brief."],
    }
    created = client.post(f"/api/v1/projects/{project.id}/judges", json=body, headers=writer)
    assert created.status_code == 201, created.text
    judge_id = created.json()["id"]
    assert created.json()["prompt_version"] == 1

    listed = client.get(f"/api/v1/projects/{project.id}/judges", headers=writer)
    assert [j["id"] for j in listed.json()["items"]] == [judge_id]
    patched = client.patch(
        f"/api/v1/judges/{judge_id}", json={"principles": ["Be kind."]}, headers=writer
    )
    assert patched.json()["prompt_version"] == 2
    paused = client.post(
        f"/api/v1/judges/{judge_id}/pause", json={"reason": "checking"}, headers=writer
    )
    assert (paused.json()["state"], paused.json()["paused_reason"]) == ("paused", "checking")
    resumed = client.post(f"/api/v1/judges/{judge_id}/resume", headers=writer)
    assert resumed.json()["state"] == "active"
    assert client.get(f"/api/v1/judges/{judge_id}", headers=writer).json()["name"] == "api judge"
    assert client.get("/api/v1/judges/999999", headers=writer).status_code == 404


def test_the_api_refuses_a_key_and_a_duplicate_name_changing_nothing(
    client: httpx.Client, db_session: Session, writer: dict[str, str]
) -> None:
    project = make_project(db_session)
    db_session.commit()
    url = f"/api/v1/projects/{project.id}/judges"
    body = {"name": "j", "backend": "openai", "model": "m", "base_url": "http://h/v1"}
    refused = client.post(url, json={**body, "api_key_env": KEY}, headers=writer)
    assert refused.status_code == 422
    assert KEY not in refused.text
    assert _judges(db_session) == 0
    assert client.post(url, json=body, headers=writer).status_code == 201
    assert client.post(url, json=body, headers=writer).status_code == 409
    assert _judges(db_session) == 1


def test_a_read_token_cannot_add_a_judge(
    client: httpx.Client, db_session: Session, reader: dict[str, str]
) -> None:
    project = make_project(db_session)
    db_session.commit()
    body = {"name": "j", "backend": "hf", "model": "tiny"}
    response = client.post(f"/api/v1/projects/{project.id}/judges", json=body, headers=reader)
    assert response.status_code == 403
    assert _judges(db_session) == 0

"""Admin pages over HTTP: access, users, projects, members, prompt import, sample upload."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models import Project, ProjectMember, Prompt, RankingTask, Role, User, WorkerHeartbeat
from tests.admin.conftest import (
    LoggedIn,
    confirm_import,
    count,
    import_token,
    jsonl,
    post_file,
    shown_counts,
)
from tests.factories import make_project, make_prompt, make_task, make_user
from tests.helpers import login

ADMIN_GETS = [
    "/admin",
    "/admin/users",
    "/admin/projects/new",
    "/admin/projects/{project}",
    "/admin/projects/{project}/members",
    "/admin/projects/{project}/prompts/import",
    "/admin/projects/{project}/samples/upload",
]
ADMIN_POSTS = [
    "/admin/users",
    "/admin/users/{user}/role",
    "/admin/users/{user}/active",
    "/admin/users/{user}/password",
    "/admin/projects",
    "/admin/projects/{project}/settings",
    "/admin/projects/{project}/sampling",
    "/admin/projects/{project}/members",
    "/admin/projects/{project}/members/{user}/remove",
    "/admin/projects/{project}/prompts/import",
    "/admin/projects/{project}/prompts/import/confirm",
    "/admin/projects/{project}/samples/upload",
]


# Access


def test_an_annotator_gets_403_on_every_admin_route(
    client: httpx.Client, db_session: Session
) -> None:
    annotator = make_user(db_session, username="ann")
    project = make_project(db_session)
    db_session.commit()
    token = login(client, "ann")

    statuses = {}
    for path in ADMIN_GETS + ADMIN_POSTS:
        url = path.format(project=project.id, user=annotator.id)
        if path in ADMIN_GETS:
            response = client.get(url)
        else:
            response = client.post(url, headers={"X-CSRF-Token": token}, data={"role": "admin"})
        statuses[path] = (response.status_code, "Admins only" in response.text)

    assert statuses == dict.fromkeys(ADMIN_GETS + ADMIN_POSTS, (403, True))
    assert db_session.get(User, annotator.id).role == Role.annotator  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ["/admin", "/admin/users", "/admin/projects/1"])
def test_a_visitor_who_is_not_logged_in_is_sent_to_the_login_page(
    client: httpx.Client, path: str
) -> None:
    response = client.get(path, follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_a_post_without_the_csrf_token_is_refused(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    response = client.post("/admin/users", data={"username": "mallory", "role": "admin"})

    assert response.status_code == 403
    assert count(db_session, User) == 1


def test_the_dashboard_lists_projects_with_their_links(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session, name="Dash")
    make_task(db_session, project)
    db_session.commit()

    page = client.get("/admin").text

    assert "Dash" in page
    assert f'href="/admin/projects/{project.id}/prompts/import"' in page
    assert f'href="/admin/projects/{project.id}/samples/upload"' in page


def test_the_dashboard_shows_worker_health(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    db_session.add(
        WorkerHeartbeat(hostname="gpu-box@test", queues="training", last_seen_at=utcnow())
    )
    db_session.commit()

    page = client.get("/admin").text

    assert "Workers and queues" in page
    row = page.split("gpu-box@test", 1)[1].split("</tr>", 1)[0]
    assert "training" in row
    assert "alive" in row


# Users


def test_the_users_page_shows_the_first_hundred_and_finds_the_others(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    for i in range(110):
        make_user(db_session, username=f"crowd{i:03d}", display_name=f"Crowd worker {i}")
    make_user(db_session, username="needle_1", display_name="Ms 100% Findable")
    db_session.commit()

    page = client.get("/admin/users").text

    assert page.count('<tr id="user-') == 100
    assert "the first 100 are shown; search to find the others" in page
    found = client.get("/admin/users", params={"q": "100%"}, headers=admin.htmx).text
    assert found.count('<tr id="user-') == 1
    assert "needle_1" in found
    literal = client.get("/admin/users", params={"q": "e_"}).text  # _ is no wildcard ("worker")
    assert literal.count('<tr id="user-') == 1
    assert client.get("/admin/users", params={"q": "x" * 101}).status_code == 422


def test_creating_a_user_shows_the_generated_password_once(
    client: httpx.Client, db_session: Session, admin: LoggedIn, second_client: TestClient
) -> None:
    response = client.post(
        "/admin/users", data={"username": "newbie", "role": "annotator"}, headers=admin.htmx
    )

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert 'id="users"' in response.text
    password = re.search(r'<code class="secret">([^<]+)</code>', response.text)
    assert password
    assert password.group(1) not in client.get("/admin/users").text
    assert login(second_client, "newbie", password.group(1))


def test_a_password_typed_by_the_admin_is_not_echoed(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    response = client.post(
        "/admin/users",
        data={"username": "typed", "role": "admin", "password": "chosen-secret-1"},
        headers=admin.headers,
    )

    assert response.status_code == 200
    assert "chosen-secret-1" not in response.text
    assert "Created typed (admin)" in response.text


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"username": "root", "role": "annotator"}, 409, "already exists"),
        ({"username": "bad name!", "role": "annotator"}, 422, "Username must be"),
        ({"username": "fine", "role": "wizard"}, 422, "Unknown role"),
        ({"username": "fine", "role": "annotator", "password": "short"}, 422, "at least 8"),
    ],
)
def test_creating_a_user_with_bad_input_creates_nothing(
    client: httpx.Client,
    db_session: Session,
    admin: LoggedIn,
    form: dict[str, str],
    status: int,
    message: str,
) -> None:
    response = client.post("/admin/users", data=form, headers=admin.htmx)

    assert response.status_code == status
    assert response.headers["HX-Retarget"] == "#flash"
    assert message in response.text
    assert count(db_session, User) == 1


def test_an_admin_changes_a_role_and_deactivates_and_reactivates_a_user(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    user = make_user(db_session, username="carl")
    db_session.commit()

    promoted = client.post(
        f"/admin/users/{user.id}/role", data={"role": "admin"}, headers=admin.htmx
    )
    off = client.post(
        f"/admin/users/{user.id}/active", data={"active": "false"}, headers=admin.htmx
    )
    db_session.refresh(user)
    assert (user.role, user.active) == (Role.admin, False)
    on = client.post(f"/admin/users/{user.id}/active", data={"active": "true"}, headers=admin.htmx)
    db_session.refresh(user)

    assert [r.status_code for r in (promoted, off, on)] == [200, 200, 200]
    assert "carl is now admin" in promoted.text
    assert "carl deactivated" in off.text
    assert user.active


def test_deactivating_a_user_logs_them_out(
    client: httpx.Client, db_session: Session, admin: LoggedIn, second_client: TestClient
) -> None:
    user = make_user(db_session, username="dora")
    db_session.commit()
    login(second_client, "dora")

    client.post(f"/admin/users/{user.id}/active", data={"active": "false"}, headers=admin.headers)

    assert second_client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_a_password_reset_shows_a_new_password_that_replaces_the_old(
    client: httpx.Client, db_session: Session, admin: LoggedIn, second_client: TestClient
) -> None:
    user = make_user(db_session, username="eve")
    db_session.commit()

    response = client.post(f"/admin/users/{user.id}/password", headers=admin.htmx)

    password = re.search(r'<code class="secret">([^<]+)</code>', response.text)
    assert password
    assert response.headers["cache-control"] == "no-store"
    assert login(second_client, "eve", password.group(1))


@pytest.mark.parametrize(
    ("action", "form"),
    [("role", {"role": "annotator"}), ("active", {"active": "false"}), ("password", {})],
)
def test_an_admin_cannot_lock_themselves_out(
    client: httpx.Client, db_session: Session, admin: LoggedIn, action: str, form: dict[str, str]
) -> None:
    response = client.post(f"/admin/users/{admin.user.id}/{action}", data=form, headers=admin.htmx)

    assert response.status_code == 409
    db_session.refresh(admin.user)
    assert (admin.user.role, admin.user.active) == (Role.admin, True)
    assert client.get("/admin").status_code == 200


# Projects


PROJECT_FORM = {
    "name": "Helpful",
    "base_model": "tiny",
    "samples_per_prompt": "6",
    "annotations_per_task": "2",
    "lease_minutes": "20",
    "temperature": "0.7",
    "top_p": "0.9",
    "max_new_tokens": "128",
    "guidelines": "Prefer **short** answers.",
}


def test_creating_a_project_redirects_to_its_page(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    response = client.post(
        "/admin/projects", data=PROJECT_FORM, headers=admin.headers, follow_redirects=False
    )

    project = db_session.scalars(select(Project)).one()
    assert response.status_code == 303
    assert response.headers["location"] == f"/admin/projects/{project.id}"
    assert (project.samples_per_prompt, project.annotations_per_task) == (6, 2)
    assert (project.lease_minutes, project.temperature, project.max_new_tokens) == (20, 0.7, 128)
    assert project.trust_remote_code is False
    page = client.get(f"/admin/projects/{project.id}").text
    assert 'name="samples_per_prompt" type="number" min="4" max="9" value="6"' in page


def test_creating_a_project_over_htmx_redirects_with_a_header(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    response = client.post("/admin/projects", data=PROJECT_FORM, headers=admin.htmx)

    project = db_session.scalars(select(Project)).one()
    assert response.headers["HX-Redirect"] == f"/admin/projects/{project.id}"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("samples_per_prompt", "3", "Samples per prompt must be between 4 and 9"),
        ("samples_per_prompt", "10", "Samples per prompt must be between 4 and 9"),
        ("annotations_per_task", "zero", "Annotations per task must be a whole number"),
        ("lease_minutes", "0", "Lease time (minutes) must be between 1 and 1440"),
        ("top_p", "2", "Top-p must be between 0.01 and 1.0"),
        ("name", "  ", "A project needs a name"),
    ],
)
def test_creating_a_project_with_a_bad_value_is_422_and_creates_nothing(
    client: httpx.Client,
    db_session: Session,
    admin: LoggedIn,
    field: str,
    value: str,
    message: str,
) -> None:
    response = client.post(
        "/admin/projects", data={**PROJECT_FORM, field: value}, headers=admin.htmx
    )

    assert response.status_code == 422
    assert message in response.text
    assert count(db_session, Project) == 0


def test_editing_a_project_with_a_bad_value_is_422_and_changes_nothing(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session, name="Stable", samples_per_prompt=4, lease_minutes=15)
    db_session.commit()

    response = client.post(
        f"/admin/projects/{project.id}/settings",
        data={**PROJECT_FORM, "name": "Changed", "lease_minutes": "30", "samples_per_prompt": "12"},
        headers=admin.htmx,
    )

    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#flash"
    assert "Samples per prompt must be between 4 and 9" in response.text
    db_session.refresh(project)
    assert (project.name, project.samples_per_prompt, project.lease_minutes) == ("Stable", 4, 15)


def test_editing_a_project_saves_and_returns_the_settings_block(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session, trust_remote_code=True)
    db_session.commit()

    response = client.post(
        f"/admin/projects/{project.id}/settings",
        data={**PROJECT_FORM, "samples_per_prompt": "9"},  # checkbox absent: unchecked
        headers=admin.htmx,
    )

    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section class="card" id="settings">')
    assert "Settings saved." in response.text
    db_session.refresh(project)
    assert (project.name, project.samples_per_prompt, project.top_p) == ("Helpful", 9, 0.9)
    assert project.trust_remote_code is False
    assert project.base_model == "tiny"


def test_the_settings_form_saves_the_annotation_efficiency_settings(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    db_session.commit()
    efficiency = {
        "selection": "active",
        "uniform_share": "0.25",
        "reliability_weighting": "false",
        "reliability_min_tasks": "5",
        "gold_rate": "0.05",
        "position_correction": "false",
    }

    response = client.post(
        f"/admin/projects/{project.id}/settings",
        data={**PROJECT_FORM, **efficiency},
        headers=admin.htmx,
    )

    assert response.status_code == 200
    assert '<option value="active" selected>' in response.text
    db_session.refresh(project)
    assert (project.selection, project.uniform_share, project.reliability_min_tasks) == (
        "active",
        0.25,
        5,
    )
    assert (project.reliability_weighting, project.position_correction) == (False, False)
    assert project.gold_rate == 0.05

    refused = client.post(
        f"/admin/projects/{project.id}/settings",
        data={**PROJECT_FORM, "selection": "uniform", "gold_rate": "0.6"},
        headers=admin.htmx,
    )

    assert refused.status_code == 422
    assert "Gold task rate must be between 0.0 and 0.5" in refused.text
    db_session.refresh(project)
    assert (project.selection, project.gold_rate) == ("active", 0.05)


def test_members_are_added_and_removed(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    user = make_user(db_session, username="fred")
    db_session.commit()

    added = client.post(
        f"/admin/projects/{project.id}/members", data={"username": " fred "}, headers=admin.htmx
    )
    assert added.status_code == 200
    assert f'id="member-{user.id}"' in added.text
    assert "fred is now a member." in added.text
    assert count(db_session, ProjectMember) == 1
    again = client.post(
        f"/admin/projects/{project.id}/members", data={"username": "fred"}, headers=admin.htmx
    )
    assert "fred was already a member." in again.text
    assert count(db_session, ProjectMember) == 1

    removed = client.post(
        f"/admin/projects/{project.id}/members/{user.id}/remove", headers=admin.htmx
    )
    assert removed.status_code == 200
    assert f'id="member-{user.id}"' not in removed.text
    assert count(db_session, ProjectMember) == 0


def test_adding_an_unknown_or_deactivated_user_is_a_422_that_adds_nobody(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    make_user(db_session, username="fred")
    make_user(db_session, username="gone", active=False)
    db_session.commit()
    url = f"/admin/projects/{project.id}/members"

    unknown = client.post(url, data={"username": "Fred"}, headers=admin.htmx)
    blank = client.post(url, data={"username": "  "}, headers=admin.htmx)
    gone = client.post(url, data={"username": "gone"}, headers=admin.htmx)

    by_id = client.post(url, data={"user_id": "1"}, headers=admin.htmx)  # the old form field

    assert unknown.status_code == 422
    assert "No user is named &#39;Fred&#39;" in unknown.text
    assert unknown.headers["HX-Retarget"] == "#flash"  # the message lands in the page's flash
    assert by_id.status_code == 422
    assert blank.status_code == 422
    assert gone.status_code == 422
    assert "deactivated" in gone.text
    assert count(db_session, ProjectMember) == 0


def test_the_member_list_shows_the_first_hundred_and_finds_the_others(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    from app.projects import service as projects

    project = make_project(db_session)
    outsider = make_user(db_session, username="outsider")
    for i in range(105):
        user = make_user(db_session, username=f"crowd{i:03d}")
        projects.add_member(db_session, project_id=project.id, user_id=user.id)
    needle = make_user(db_session, username="needle_1", display_name="Ms 100% Findable")
    projects.add_member(db_session, project_id=project.id, user_id=needle.id)
    db_session.commit()

    members = f"/admin/projects/{project.id}/members"

    page = client.get(f"/admin/projects/{project.id}").text
    found = client.get(members, params={"q": "100%"}, headers=admin.htmx).text
    literal = client.get(members, params={"q": "e_"}, headers=admin.htmx).text  # _ is no wildcard
    crowd = client.get(members, params={"q": "crowd"}, headers=admin.htmx).text
    none = client.get(members, params={"q": "outsider"}).text
    removed = client.post(
        f"{members}/{needle.id}/remove", data={"q": "crowd00"}, headers=admin.htmx
    ).text

    assert page.count('<tr id="member-') == 100
    assert "106 members: the first 100 are shown; search to find the others" in page
    assert 'name="username"' in page
    assert 'name="user_id"' not in page  # no list of every user to pick from
    assert found.lstrip().startswith('<section class="card" id="members">')
    assert found.count('<tr id="member-') == 1
    assert f'id="member-{needle.id}"' in found
    assert literal.count('<tr id="member-') == 1
    assert crowd.count('<tr id="member-') == 100
    assert "narrow the search to find the others" in crowd
    assert none.lstrip().startswith("<!doctype html>")  # no HTMX: the whole page
    assert "No member matches." in none
    assert f'id="member-{outsider.id}"' not in none
    assert removed.count('<tr id="member-') == 10  # the search stays: crowd000..crowd009
    assert client.get(members, params={"q": "x" * 101}).status_code == 422


def test_a_plain_form_post_shows_its_notice_in_its_own_card_only(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    make_user(db_session, username="fred")
    db_session.commit()

    saved = client.post(
        f"/admin/projects/{project.id}/settings", data=PROJECT_FORM, headers=admin.headers
    ).text
    added = client.post(
        f"/admin/projects/{project.id}/members", data={"username": "fred"}, headers=admin.headers
    ).text

    assert saved.count("Settings saved.") == 1
    assert 'id="settings-notice"' in saved
    assert 'id="members-notice"' not in saved
    assert added.count("fred is now a member.") == 1
    assert 'id="members-notice"' in added
    assert 'id="settings-notice"' not in added


def test_the_project_page_shows_progress(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session)
    make_task(db_session, project)
    make_task(db_session, project)
    db_session.commit()

    page = client.get(f"/admin/projects/{project.id}").text
    fragment = client.get(f"/admin/projects/{project.id}", headers={"HX-Request": "true"}).text

    assert '<span class="stat-value" id="stat-open">2</span>' in page
    assert '<span class="stat-value" id="stat-prompts">2</span>' in page
    assert fragment.lstrip().startswith('<section class="card" id="progress">')


def test_the_project_page_shows_sampling_jobs_and_follows_a_running_one(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    from app.models import JobState
    from app.projects.service import add_prompts
    from app.sampling import service as sampling

    project = make_project(db_session)
    add_prompts(db_session, project_id=project.id, contents=["One?", "Two?", "Three?"])
    job = sampling.start_sampling(db_session, project_id=project.id, enqueue=False)
    assert job is not None
    job.state, job.prompts_done = JobState.running, 2
    db_session.commit()

    running = client.get(f"/admin/projects/{project.id}", headers={"HX-Request": "true"}).text

    row = running[running.index(f'id="sampling-job-{job.id}"') :]
    assert "running" in row[: row.index("</tr>")]
    assert "2 / 3" in row[: row.index("</tr>")]
    assert 'hx-trigger="every 3s"' in running  # the page follows the job
    job.state, job.prompts_done, job.error = JobState.failed, 2, "CUDA out of memory"
    db_session.commit()

    failed = client.get(f"/admin/projects/{project.id}").text

    assert "CUDA out of memory" in failed
    assert 'hx-trigger="every 3s"' not in failed


def test_an_unknown_project_is_404(client: httpx.Client, admin: LoggedIn) -> None:
    assert client.get("/admin/projects/999999").status_code == 404


# Prompt import


def test_import_preview_then_confirm_adds_only_new_prompts(
    client: httpx.Client, db_session: Session, admin: LoggedIn, project: Project
) -> None:
    url = f"/admin/projects/{project.id}/prompts/import"
    data = jsonl(
        {"instruction": "Old prompt", "input": ""},
        {"instruction": "New prompt", "input": "with input"},
        {"instruction": "New prompt", "input": "with input"},
        {"instruction": "Another"},
    )
    make_prompt(db_session, project, "Old prompt")
    db_session.commit()

    preview = post_file(client, url, "alpaca.jsonl", data, admin.htmx, data={"format": ""})

    assert preview.status_code == 200
    assert "Alpaca" in preview.text
    counts = shown_counts(preview)
    assert (counts["new"], counts["in-project"], counts["repeated"]) == (2, 1, 1)
    assert count(db_session, Prompt) == 1  # nothing stored before the confirm
    token = import_token(preview)

    confirmed = confirm_import(client, url, token, admin.htmx)

    assert confirmed.status_code == 200
    assert "Imported 2 prompts" in confirmed.text
    texts = db_session.scalars(select(Prompt.text).where(Prompt.source == "alpaca"))
    assert sorted(texts) == ["Another", "New prompt\n\nwith input"]
    again = confirm_import(client, url, token, admin.htmx)
    assert again.status_code == 404
    assert count(db_session, Prompt) == 3


def test_import_preview_lists_bad_lines_by_number(
    client: httpx.Client, admin: LoggedIn, project: Project
) -> None:
    data = b'{"prompt": "fine"}\n{"prompt": ""}\nnot json\n{"prompt": "<b>also</b> fine"}\n'

    preview = post_file(  # a plain form post: token in the form, the whole page back
        client,
        f"/admin/projects/{project.id}/prompts/import",
        "p.jsonl",
        data,
        {},
        data={"csrf_token": admin.csrf, "format": ""},
    )

    assert preview.status_code == 200
    assert "<h1>Import prompts into" in preview.text
    assert '<strong data-count="errors">2</strong>' in preview.text
    assert '<td class="num">2</td><td>&#39;prompt&#39; is empty</td>' in preview.text
    assert '<td class="num">3</td><td>invalid JSON: Expecting value (column 1)</td>' in preview.text
    assert "&lt;b&gt;also&lt;/b&gt; fine" in preview.text
    assert "Import 2 prompts and leave out the bad lines" in preview.text


def test_the_admin_can_force_a_format(
    client: httpx.Client, admin: LoggedIn, project: Project
) -> None:
    url = f"/admin/projects/{project.id}/prompts/import"
    data = b"instruction,context,response,category\nName a fish,In the sea,Tope,classification\n"

    detected = post_file(client, url, "dolly.csv", data, admin.htmx)
    forced = post_file(client, url, "dolly.csv", data, admin.htmx, data={"format": "alpaca"})

    assert "Format: <strong>Dolly" in detected.text
    assert "Name a fish\n\nIn the sea" in detected.text
    assert "Format: <strong>Alpaca" in forced.text
    assert "In the sea" not in forced.text  # Alpaca has no context column


@pytest.mark.parametrize("what", ["prompts", "demonstrations"])
def test_an_empty_upload_is_422(
    client: httpx.Client, admin: LoggedIn, project: Project, what: str
) -> None:
    url = f"/admin/projects/{project.id}/{what}/import"

    response = post_file(client, url, "empty.jsonl", b"", admin.htmx)

    assert response.status_code == 422
    assert "The file is empty" in response.text


# Sample upload


def test_sample_upload_creates_tasks_and_reports_counts(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    db_session.commit()
    data = jsonl(
        *({"prompt": p, "samples": [f"{p} {i}" for i in range(4)]} for p in ["Hello?", "Bye?"])
    )

    response = post_file(
        client,
        f"/admin/projects/{project.id}/samples/upload",
        "samples.jsonl",
        data,
        admin.htmx,
        data={"model": "outside-model"},
    )

    assert response.status_code == 200
    assert '<strong data-count="tasks">2</strong>' in response.text
    assert "New policy versions: outside-model." in response.text
    assert count(db_session, RankingTask) == 2
    page = client.get(f"/admin/projects/{project.id}").text
    assert "outside-model" in page


def test_sample_upload_with_a_bad_line_stores_nothing_and_says_where(
    client: httpx.Client, db_session: Session, admin: LoggedIn, project: Project
) -> None:
    url = f"/admin/projects/{project.id}/samples/upload"
    data = b'{"prompt": "p", "samples": ["a", "b", "c", "d"], "model": "m"}\n{"prompt": "q"}\n'

    response = post_file(client, url, "samples.jsonl", data, admin.htmx)

    assert response.status_code == 200
    assert 'id="upload-refused"' in response.text
    assert '<td class="num">2</td><td>missing field &#39;samples&#39;</td>' in response.text
    assert count(db_session, RankingTask) == 0


def test_an_id_too_large_for_the_database_is_422_not_500(
    client: httpx.Client, admin: LoggedIn
) -> None:
    assert client.get(f"/admin/projects/{2**31}").status_code == 422
    assert client.get(f"/admin/projects/{2**63}/samples/upload").status_code == 422


def test_the_project_page_says_why_tasks_were_chosen_once_any_was_chosen_actively(
    client: httpx.Client, db_session: Session, admin: LoggedIn
) -> None:
    project = make_project(db_session, selection="active")
    make_task(db_session, project)
    db_session.commit()

    uniform_only = client.get(f"/admin/projects/{project.id}")

    assert uniform_only.status_code == 200
    assert 'id="task-selection"' not in uniform_only.text
    make_task(db_session, project).selection_reason = "uncertainty"
    db_session.commit()

    page = client.get(f"/admin/projects/{project.id}").text

    assert re.search(
        r'id="task-selection-uncertainty"><td>[^<]+</td><td class="num">1</td>', page
    )
    assert re.search(r'id="task-selection-uniform"><td>[^<]+</td><td class="num">1</td>', page)

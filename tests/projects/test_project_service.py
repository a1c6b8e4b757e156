"""Project rules: settings in bounds (a bad value changes nothing), members, progress counts."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import Conflict, InvalidInput, NotFound
from app.models import Assignment, AssignmentState, Ranking, TaskStatus
from app.projects import repository
from app.projects import service as projects
from tests.factories import make_project, make_task, make_user, make_version


def test_update_rejects_an_out_of_range_value_and_changes_nothing(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=5)

    with pytest.raises(InvalidInput, match="Samples per prompt must be between 4 and 9"):
        projects.update_project(
            db_session, project_id=project.id, name="Renamed", lease_minutes="30",
            samples_per_prompt="10",
        )  # fmt: skip

    assert project.name != "Renamed"
    assert (project.lease_minutes, project.samples_per_prompt) == (15, 5)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("annotations_per_task", "0", "Annotations per task must be between 1 and 50"),
        ("lease_minutes", "", "Lease time (minutes) must be a whole number"),
        ("samples_per_prompt", "4.5", "Samples per prompt must be a whole number"),
        ("top_p", "1.5", "Top-p must be between 0.01 and 1.0"),
        ("temperature", "nan", "Temperature must be between 0.01 and 5.0"),
        ("trust_remote_code", "maybe", "Trust remote code must be true or false"),
    ],
)
def test_settings_are_checked_with_readable_messages(
    db_session: Session, field: str, value: str, message: str
) -> None:
    project = make_project(db_session)

    with pytest.raises(InvalidInput) as raised:
        projects.update_project(db_session, project_id=project.id, **{field: value})

    assert raised.value.message == message


def test_form_values_are_converted_to_the_settings_types(db_session: Session) -> None:
    project = make_project(db_session, trust_remote_code=True)

    projects.update_project(
        db_session, project_id=project.id, samples_per_prompt="7", top_p="0.5",
        trust_remote_code="false", guidelines="  Be kind  ",
    )  # fmt: skip

    assert (project.samples_per_prompt, project.top_p) == (7, 0.5)
    assert project.trust_remote_code is False
    assert project.guidelines == "Be kind"


def test_a_project_name_must_be_unique(db_session: Session) -> None:
    make_project(db_session, name="Taken")
    project = make_project(db_session)

    with pytest.raises(Conflict):
        projects.update_project(db_session, project_id=project.id, name=" Taken ")
    with pytest.raises(Conflict):
        make_project(db_session, name="Taken")


def test_a_project_needs_a_base_model(db_session: Session) -> None:
    with pytest.raises(InvalidInput, match="Base model"):
        make_project(db_session, base_model="  ")


def test_members_are_added_once_and_removed(db_session: Session) -> None:
    project, user = make_project(db_session), make_user(db_session)

    projects.add_member(db_session, project_id=project.id, user_id=user.id)
    projects.add_member(db_session, project_id=project.id, user_id=user.id)
    assert [u.id for _, u in repository.list_members(db_session, project.id)] == [user.id]

    projects.remove_member(db_session, project_id=project.id, user_id=user.id)
    assert repository.list_members(db_session, project.id) == []
    with pytest.raises(NotFound):
        projects.remove_member(db_session, project_id=project.id, user_id=user.id)


def test_an_excluded_member_can_be_removed_and_their_rankings_stay_out(
    db_session: Session,
) -> None:
    from app.ratings import repository as ratings_repository
    from app.ratings import service as ratings

    project, user = make_project(db_session), make_user(db_session)
    projects.add_member(db_session, project_id=project.id, user_id=user.id)
    ratings.set_excluded(db_session, project_id=project.id, user_id=user.id, excluded=True)

    projects.remove_member(db_session, project_id=project.id, user_id=user.id)

    assert repository.list_members(db_session, project.id) == []
    assert ratings_repository.excluded_users(db_session, project.id) == {user.id}


def test_a_deactivated_user_cannot_be_added(db_session: Session) -> None:
    project, user = make_project(db_session), make_user(db_session, active=False)

    with pytest.raises(InvalidInput, match="deactivated"):
        projects.add_member(db_session, project_id=project.id, user_id=user.id)


def test_progress_counts_tasks_leases_rankings_and_samples(db_session: Session) -> None:
    project = make_project(db_session, samples_per_prompt=4)
    ann, bob = make_user(db_session, username="ann"), make_user(db_session, username="bob")
    leased, stale, done, open_ = (make_task(db_session, project) for _ in range(4))
    external = make_version(db_session, project, name="gpt-x")
    make_task(db_session, project, version=external)
    done.status = TaskStatus.complete
    now = utcnow()
    db_session.add_all(
        [
            Assignment(task_id=leased.id, user_id=ann.id, expires_at=now + timedelta(minutes=5)),
            Assignment(task_id=leased.id, user_id=bob.id, expires_at=now + timedelta(minutes=5)),
            Assignment(task_id=stale.id, user_id=ann.id, expires_at=now - timedelta(minutes=1)),
            Assignment(
                task_id=done.id,
                user_id=bob.id,
                state=AssignmentState.submitted,
                expires_at=now + timedelta(minutes=5),
            ),
            Ranking(project_id=project.id, task_id=done.id, user_id=bob.id, groups=[[1]]),
            Ranking(project_id=project.id, task_id=open_.id, user_id=bob.id, none_usable=True),
            Ranking(project_id=project.id, task_id=leased.id, user_id=ann.id, groups=[[1]]),
        ]
    )
    db_session.flush()

    progress = projects.progress(db_session, project_id=project.id)

    assert (progress.tasks_open, progress.tasks_leased, progress.live_leases) == (4, 1, 2)
    assert progress.tasks_complete == 1
    assert progress.prompts == 5
    assert [(r.username, r.rankings, r.none_usable) for r in progress.rankings_by_annotator] == [
        ("bob", 2, 1),
        ("ann", 1, 0),
    ]
    assert [(v.name, v.samples, v.prompts) for v in progress.samples_by_version] == [
        ("base", 16, 4),
        ("gpt-x", 4, 1),
    ]


def test_project_summaries_count_each_project_separately(db_session: Session) -> None:
    first, second = make_project(db_session, name="First"), make_project(db_session, name="Second")
    make_task(db_session, first)
    projects.add_member(db_session, project_id=second.id, user_id=make_user(db_session).id)

    summaries = {s.project.name: s for s in projects.project_summaries(db_session)}

    assert (summaries["First"].prompts, summaries["First"].open_tasks) == (1, 1)
    assert (summaries["Second"].prompts, summaries["Second"].members) == (0, 1)


# Stop strings


def test_stop_strings_come_one_per_line_with_escaped_line_breaks(db_session: Session) -> None:
    project = make_project(db_session)

    projects.update_project(
        db_session, project_id=project.id, stop_strings="\\nUser:\r\n\r\n  ###  \n\\\\n\n###"
    )

    assert project.stop_strings == ["\nUser:", "###", "\\n"]  # blank lines and repeats dropped
    assert projects.stop_strings_text(project.stop_strings) == "\\nUser:\n###\n\\\\n"


def test_blank_stop_strings_derive_from_the_template_and_an_empty_list_means_eos_only(
    db_session: Session,
) -> None:
    project = make_project(db_session, stop_strings=["###"])

    projects.update_project(db_session, project_id=project.id, stop_strings=" \n ")
    assert project.stop_strings is None
    projects.update_project(db_session, project_id=project.id, stop_strings=[])
    assert project.stop_strings == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("\n".join(f"stop {i}" for i in range(17)), "At most 16 stop strings (got 17)"),
        ("x" * 101, "Each stop string must be at most 100 characters"),
        (["\nUser:", ""], "A stop string must not be empty"),
        (["ok", 3], "Stop strings must be text, one per line"),
    ],
)
def test_stop_strings_are_checked_and_a_bad_list_changes_nothing(
    db_session: Session, value: object, message: str
) -> None:
    project = make_project(db_session, stop_strings=["###"])

    with pytest.raises(InvalidInput, match=re.escape(message)) as raised:
        projects.update_project(
            db_session, project_id=project.id, stop_strings=value, lease_minutes="30"
        )

    assert raised.value.status_code == 422
    assert (project.stop_strings, project.lease_minutes) == (["###"], 15)


def test_sixteen_stop_strings_of_a_hundred_characters_are_accepted(db_session: Session) -> None:
    project = make_project(db_session)
    stops = [f"{i:02d}" + "x" * 98 for i in range(16)]

    projects.update_project(db_session, project_id=project.id, stop_strings="\n".join(stops))

    assert project.stop_strings == stops

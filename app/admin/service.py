"""Admin use cases that span accounts and projects: guarded user changes and page data.

An admin cannot demote, deactivate or reset themselves here: doing so by accident would lock
the only admin out, and there is no page to undo it from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app import preparation
from app.accounts import repository as accounts_repository
from app.accounts import service as accounts
from app.errors import Conflict
from app.judges import suggestions
from app.models import Project, ProjectMember, Role, User
from app.projects import planner_service
from app.projects import repository as projects_repository
from app.projects import service as projects
from app.ratings import repository as ratings_repository
from app.ratings import service as ratings
from app.rounds import repository as rounds_repository
from app.rounds import rollback
from app.sampling import service as sampling
from app.security import generate_password

ROLES = [role.value for role in Role]


@dataclass(frozen=True)
class UserChange:
    user: User
    password: str | None = None
    """A generated password: shown to the admin once, never stored in clear."""


USERS_PER_PAGE = 100


@dataclass
class UserList:
    users: list[User]
    """At most USERS_PER_PAGE, by username."""
    more: bool
    """More users match than are shown: the page asks for a narrower search."""
    total: int
    search: str


def list_users(session: Session, *, search: str = "") -> UserList:
    """A workforce of thousands of annotators must not make one page of megabytes."""
    search = search.strip()
    found = accounts_repository.list_users(session, search=search, limit=USERS_PER_PAGE + 1)
    return UserList(
        users=found[:USERS_PER_PAGE],
        more=len(found) > USERS_PER_PAGE,
        total=accounts_repository.count_users(session),
        search=search,
    )


def create_user(
    session: Session, *, username: str, display_name: str, role: str, password: str
) -> UserChange:
    """Create an account; with no password given, generate one to hand over."""
    generated = None if password else generate_password()
    user = accounts.create_user(
        session,
        username=username,
        password=password or generated or "",
        role=role,
        display_name=display_name,
    )
    return UserChange(user, generated)


def change_role(session: Session, *, actor: User, user_id: int, role: str) -> User:
    _not_self(actor, user_id, "change your own role")
    return accounts.set_role(session, user_id=user_id, role=role)


def set_active(session: Session, *, actor: User, user_id: int, active: bool) -> User:
    _not_self(actor, user_id, "deactivate your own account")
    return accounts.set_active(session, user_id=user_id, active=active)


def reset_password(session: Session, *, actor: User, user_id: int) -> UserChange:
    """A new generated password; the user's sessions end, so they log in with it."""
    _not_self(actor, user_id, "reset your own password here")
    password = generate_password()
    return UserChange(accounts.set_password(session, user_id=user_id, password=password), password)


def _not_self(actor: User, user_id: int, what: str) -> None:
    if actor.id == user_id:
        raise Conflict(f"You cannot {what}; ask another admin")


MEMBERS_PER_PAGE = 100


@dataclass(frozen=True)
class ProjectPage:
    project: Project
    members: list[tuple[ProjectMember, User]]
    """At most MEMBERS_PER_PAGE, by username, matching `member_search`."""
    members_more: bool
    """More members match than are shown: the page asks for a narrower search."""
    member_total: int
    member_search: str
    excluded_ids: frozenset[int]
    """Annotators excluded from ratings and training (shown beside their membership)."""
    progress: projects.ProjectProgress
    next_step: NextStep
    sampling_jobs: list[sampling.JobView]
    """Newest first; the page refreshes itself while one is queued or running."""
    worse_version: rollback.WorseVersion | None
    """The current version when annotators rate it worse than its parent (roll back offered)."""
    preparing: preparation.Preparing | None = None
    """What new tasks wait for (the tiny model's build, a sampling job); the page refreshes
    itself meanwhile."""
    study_plan: planner_service.StudyPlan | None = None
    """Rankings still needed for a target accuracy and a verdict (templates/_study_planner.html)."""
    task_selection: list[sampling.SelectionRow] = field(default_factory=list)
    """Tasks by why they were made (templates/_task_selection.html); empty while all are uniform."""
    suggestion_report: suggestions.SuggestionReport | None = None
    """How often people keep a judge's suggested order, shown and hidden
    (templates/_suggestion_report.html); None while no suggestion was ever decided."""


def project_page(session: Session, *, project_id: int, member_search: str = "") -> ProjectPage:
    project = projects.require_project(session, project_id)
    member_search = member_search.strip()
    members = projects_repository.list_members(
        session, project_id, search=member_search, limit=MEMBERS_PER_PAGE + 1
    )
    progress = projects.progress(session, project_id=project_id)
    jobs = sampling.recent_jobs(session, project_id=project_id)
    return ProjectPage(
        project=project,
        members=members[:MEMBERS_PER_PAGE],
        members_more=len(members) > MEMBERS_PER_PAGE,
        member_total=projects_repository.count_members(session, project_id),
        member_search=member_search,
        excluded_ids=frozenset(ratings_repository.excluded_users(session, project_id)),
        progress=progress,
        next_step=next_step(
            prompts=projects_repository.count_active_prompts(session, project_id),
            open_tasks=progress.tasks_open,
            new_rankings=projects_repository.rankings_since_last_round(session, project_id),
            round_running=rounds_repository.active_round(session, project_id) is not None,
            sampling_running=any(job.active for job in jobs),
        ),
        sampling_jobs=jobs,
        worse_version=rollback.worse_current_version(session, project_id=project_id),
        preparing=preparation.preparing(session, project),
        study_plan=planner_service.study_plan(session, project_id=project_id),
        task_selection=sampling.selection_summary(session, project_id=project_id),
        suggestion_report=_suggestion_report(session, project),
    )


def _suggestion_report(session: Session, project: Project) -> suggestions.SuggestionReport | None:
    report = suggestions.suggestion_report(session, project_id=project.id)
    if not project.judge_suggestions and not report.shown.rankings + report.hidden.rankings:
        return None
    return report


# Next step


@dataclass(frozen=True)
class NextStep:
    """The one thing that moves the project on now, for the project page's "Next" line."""

    action: str
    """import_prompts, wait_for_round, start_round, annotate, wait_for_sampling or sample."""
    message: str


def next_step(
    *,
    prompts: int,
    open_tasks: int,
    new_rankings: int,
    round_running: bool,
    sampling_running: bool,
) -> NextStep:
    """A round is worth starting once the rankings made since the last one cover the active
    prompts once on average, or once nothing is left to annotate; before that, annotate; with
    no task open (after a rejected round, say), sample more of the current version."""
    if prompts == 0:
        return NextStep("import_prompts", "Import prompts: the project has no active prompt.")
    if round_running:
        return NextStep(
            "wait_for_round", "A training round is running; its version's tasks follow it."
        )
    if new_rankings and (open_tasks == 0 or new_rankings >= prompts):
        return NextStep(
            "start_round",
            f"Start a round: {_count(new_rankings, 'new ranking')} since the last round.",
        )
    if open_tasks:
        return NextStep("annotate", f"Annotate {_count(open_tasks, 'open task')}.")
    if sampling_running:
        return NextStep("wait_for_sampling", "Sampling is making new tasks to annotate.")
    return NextStep(
        "sample",
        "Sample more: no task is open, so draw fresh samples of the current version for "
        "the prompts with the fewest tasks.",
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def sample_more(session: Session, *, project_id: int) -> str:
    """The project page's "Sample more": a job over the prompts with the fewest tasks."""
    job = sampling.start_sampling(session, project_id=project_id)
    if job is None:
        return "Every active prompt is being sampled by a running job already."
    return f"Sampling job #{job.id} started over {_count(job.prompts_total, 'prompt')}."


RATING_SETTINGS = (
    "reliability_weighting",
    "reliability_min_tasks",
    "position_correction",
    "judges_in_human_figures",
)
"""Settings the ratings job reads: changing one refits the ratings."""


def save_settings(
    session: Session, *, project_id: int, name: str | None = None, settings: dict[str, Any]
) -> Project:
    """Change a project's settings (all checked before any changes); a change to how the
    ratings are fitted sends the ratings job, so the leaderboard and the reliability weights
    follow at once rather than at the next ranking."""
    project = projects.require_project(session, project_id)
    before = {key: getattr(project, key) for key in RATING_SETTINGS}
    project = projects.update_project(session, project_id=project_id, name=name, **settings)
    if any(getattr(project, key) != value for key, value in before.items()):
        ratings.note_new_rankings(session, project_id=project_id)
    return project


"""A judge's order shown to people as a suggestion, and how much it anchors them.

With `project.judge_suggestions` on, a person's lease of a task a judge has ranked is marked
'shown' or 'hidden' (the control share, `suggestion_control_share`), drawn once per user and
task so the page and the submit agree; the ranking copies the mark. The report compares how
often people keep the judge's order when they saw it with when they did not (for hidden ones,
against the judge ranking they never saw): a gap is the suggestion's anchoring.

A judge's harm flags ('suggested_harmful') are shown on the cards as a suggestion; only a
person's 'harmful' flag is final.

Gold tasks show neither: they measure the person, and a judge's hint there would let people
copy the judge on exactly the tasks that tell how reliable they are.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from itertools import combinations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Assignment, Judge, Project, Ranking, SampleFlag
from app.seeds import derived_seed

SUGGESTED_HARMFUL = "suggested_harmful"
SHOWN, HIDDEN = "shown", "hidden"


# At lease time


def suggestion_draw(*, user_id: int, task_id: int, control_share: float) -> str:
    """'hidden' with probability `control_share`, else 'shown'; the same answer every time
    it is asked for this user and task (a reload, a replay, a test)."""
    draw = random.Random(derived_seed(f"suggestion:{user_id}", task_id)).random()
    return HIDDEN if draw < control_share else SHOWN


def judge_order(session: Session, task_id: int) -> list[list[int]] | None:
    """The latest ranking of the task by an active judge (sample ids best first, ties in one
    list), or None when no active judge has ranked it."""
    groups = session.scalar(
        select(Ranking.groups)
        .join(Judge, Judge.id == Ranking.judge_id)
        .where(
            Ranking.task_id == task_id,
            Ranking.source == "ai",
            Ranking.none_usable.is_(False),
            Judge.state == "active",
        )
        .order_by(Ranking.created_at.desc(), Ranking.id.desc())
        .limit(1)
    )
    return [list(group) for group in groups] if groups else None


def decide_suggestion(
    session: Session, *, project: Project, assignment: Assignment, gold: bool
) -> None:
    """Mark a person's new lease 'shown' or 'hidden' when suggestions are on and a judge has
    ranked the task; leave it None otherwise, and always on a gold task (`gold`: the caller
    leased it as one or not, so it is not read again)."""
    if not project.judge_suggestions or gold:
        return
    if judge_order(session, assignment.task_id) is None:
        return
    assignment.suggestion = suggestion_draw(
        user_id=assignment.user_id,
        task_id=assignment.task_id,
        control_share=project.suggestion_control_share,
    )


def shown_order(session: Session, assignment: Assignment) -> list[list[int]] | None:
    """The judge's order to show on this lease's page: only on a 'shown' lease."""
    if assignment.suggestion != SHOWN:
        return None
    return judge_order(session, assignment.task_id)


def suggested_harm(session: Session, sample_ids: list[int], *, gold: bool) -> dict[int, str]:
    """Sample id → a judge's reason for suggesting it is harmful (the first judge's); none on
    a gold task (`gold`: the task view read it with the task)."""
    found: dict[int, str] = {}
    if gold:
        return found
    for sample_id, reason in session.execute(
        select(SampleFlag.sample_id, SampleFlag.reason)
        .where(SampleFlag.sample_id.in_(sample_ids), SampleFlag.kind == SUGGESTED_HARMFUL)
        .order_by(SampleFlag.id)
    ):
        found.setdefault(sample_id, reason)
    return found


# The report


def _places(groups: list[list[int]]) -> dict[int, int]:
    return {sample_id: level for level, group in enumerate(groups) for sample_id in group}


def keeps_top(person: list[list[int]], judge: list[list[int]]) -> bool:
    """The person's best group is the judge's best group (the same samples)."""
    return bool(person and judge) and set(person[0]) == set(judge[0])


def pair_agreement(person: list[list[int]], judge: list[list[int]]) -> tuple[int, int]:
    """(agreeing, compared): pairs both order strictly (ties left out), and how many of them
    they order the same way."""
    mine, theirs = _places(person), _places(judge)
    agree = compared = 0
    for a, b in combinations(sorted(mine.keys() & theirs.keys()), 2):
        if mine[a] == mine[b] or theirs[a] == theirs[b]:
            continue
        compared += 1
        agree += (mine[a] < mine[b]) == (theirs[a] < theirs[b])
    return agree, compared


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """95% Wilson interval of a share; (None, None) without data."""
    if n == 0:
        return None, None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class SuggestionArm:
    """People's rankings made with the suggestion shown, or hidden (the control)."""

    arm: str
    rankings: int
    kept_top: int
    agreeing_pairs: int
    compared_pairs: int

    @property
    def kept_top_rate(self) -> float | None:
        return self.kept_top / self.rankings if self.rankings else None

    @property
    def kept_top_interval(self) -> tuple[float | None, float | None]:
        return wilson(self.kept_top, self.rankings)

    @property
    def pair_agreement(self) -> float | None:
        return self.agreeing_pairs / self.compared_pairs if self.compared_pairs else None


@dataclass(frozen=True)
class SuggestionReport:
    project_id: int
    enabled: bool
    control_share: float
    shown: SuggestionArm
    hidden: SuggestionArm

    @property
    def anchoring(self) -> float | None:
        """Kept-top rate shown minus hidden: how much more people keep the judge's top
        answer when they see it (None until both arms have rankings)."""
        shown, hidden = self.shown.kept_top_rate, self.hidden.kept_top_rate
        return None if shown is None or hidden is None else shown - hidden


def suggestion_report(session: Session, *, project_id: int) -> SuggestionReport:
    """Each person's ranking made with a suggestion decided, against the judge ranking of
    the task they saw, or would have seen: the latest one made before theirs."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"No project {project_id}")
    people = session.execute(
        select(Ranking.task_id, Ranking.groups, Ranking.suggestion, Ranking.created_at)
        .where(
            Ranking.project_id == project_id,
            Ranking.source == "human",
            Ranking.suggestion.is_not(None),
            Ranking.none_usable.is_(False),
        )
        .order_by(Ranking.id)
    ).all()
    judged: dict[int, list[tuple[object, list[list[int]]]]] = {}
    if people:
        for task_id, groups, created_at in session.execute(
            select(Ranking.task_id, Ranking.groups, Ranking.created_at)
            .where(
                Ranking.project_id == project_id,
                Ranking.source == "ai",
                Ranking.none_usable.is_(False),
                Ranking.task_id.in_({row.task_id for row in people}),
            )
            .order_by(Ranking.created_at, Ranking.id)
        ):
            judged.setdefault(task_id, []).append((created_at, groups))
    tally = {arm: [0, 0, 0, 0] for arm in (SHOWN, HIDDEN)}
    for task_id, groups, arm, created_at in people:
        earlier = [g for at, g in judged.get(task_id, []) if at <= created_at]  # type: ignore[operator]
        judge = earlier[-1] if earlier else None
        if judge is None or arm not in tally:
            continue
        agree, compared = pair_agreement(groups, judge)
        counts = tally[arm]
        counts[0] += 1
        counts[1] += keeps_top(groups, judge)
        counts[2] += agree
        counts[3] += compared
    return SuggestionReport(
        project_id=project_id,
        enabled=project.judge_suggestions,
        control_share=project.suggestion_control_share,
        shown=SuggestionArm(SHOWN, *tally[SHOWN]),
        hidden=SuggestionArm(HIDDEN, *tally[HIDDEN]),
    )

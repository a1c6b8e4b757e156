"""Pausing a judge whose agreement with people falls below its floor.

A judge's rankings are only worth using while they agree with people; below
`Judge.agreement_floor` (once `floor_min_pairs` shared pairs make the figure worth acting on)
it is paused with the figure in the reason, so an admin sees why and can resume it. Run by the
ratings job (people ranked more) and by the judging job after each batch (the judge did).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.judges.measurement import Estimate, agreement_with_people
from app.judges.service import list_judges, pause_judge
from app.models import Judge


def floor_reason(agreement: Estimate, floor: float) -> str:
    """E.g. 'agreement with people 0.54 (95% CI 0.47–0.61, 212 pairs) is below the floor
    0.60'."""
    return (
        f"agreement with people {agreement.value:.2f} (95% CI {agreement.low:.2f}–"
        f"{agreement.high:.2f}, {agreement.n} pairs) is below the floor {floor:.2f}"
    )


def below_floor(judge: Judge, agreement: Estimate) -> bool:
    """Enough shared pairs, and the pooled agreement under the judge's floor."""
    return (
        judge.agreement_floor is not None
        and agreement.value is not None
        and agreement.n >= judge.floor_min_pairs
        and agreement.value < judge.agreement_floor
    )


def enforce_agreement_floor(session: Session, *, project_id: int) -> list[int]:
    """Pause the project's active judges below their agreement floor; their ids."""
    paused = []
    for judge in list_judges(session, project_id=project_id):
        if judge.state != "active" or judge.agreement_floor is None:
            continue
        _, agreement, _ = agreement_with_people(session, judge, with_tau=False)
        if below_floor(judge, agreement):
            pause_judge(
                session,
                judge_id=judge.id,
                reason=floor_reason(agreement, judge.agreement_floor),
            )
            paused.append(judge.id)
    return paused

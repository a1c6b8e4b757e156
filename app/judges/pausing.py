"""Pausing a judge that is worth less than its floor says (docs/training-notes.md §Judges).

A judge's rankings are only worth using while they agree with people. The relative floor
(`Judge.relative_floor`, default 0.5) compares it with people on the same footing: the judge
against each person beside people against each other, chance-corrected; it is paused when
that ratio is significantly below the floor (its 95% upper bound under it), never when people
agree with each other at chance (the ratio is then undefined). The optional absolute floor
(`Judge.agreement_floor`) pauses it when its agreement with the consensus falls below a fixed
share. Both wait for `floor_min_pairs` shared pairs; the reason names the figures. Run by the
ratings job (people ranked more) and by the judging job after each batch (the judge did).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.judges.measurement import floor_check
from app.judges.service import list_judges, pause_judge


def enforce_agreement_floor(session: Session, *, project_id: int) -> list[int]:
    """Pause the project's active judges below a floor; their ids."""
    paused = []
    for judge in list_judges(session, project_id=project_id):
        if judge.state != "active" or (
            judge.agreement_floor is None and judge.relative_floor is None
        ):
            continue
        check = floor_check(session, judge)
        if check.below:
            pause_judge(session, judge_id=judge.id, reason="; ".join(check.below)[:500])
            paused.append(judge.id)
    return paused


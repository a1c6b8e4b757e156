"""The debounced ratings recomputation as a plain function (the `ratings.recompute` task calls
it; tests call it directly). See app/ratings/service.py for the debounce protocol.
"""

from __future__ import annotations

from app.db import session_scope
from app.judges.pausing import enforce_agreement_floor
from app.ratings import service


def recompute_if_dirty(project_id: int) -> bool:
    """Claim the project's marker, refit, store, release, then pause the judges below their
    agreement floor; False when there was nothing to do.

    Four short transactions (claim, load, store, release), so submits wait for the claim only,
    never for the load, the fit or the store. The marker holds the claim until the release, so
    the leaderboard reads `recompute_pending` until the new fit is stored. If the fit fails,
    the exception propagates (the task fails and is logged) and the claim stays: the leaderboard
    still says a recomputation is due, and the next submit takes the claim over and sends the
    next run, which refits from all comparisons, losing nothing.
    """
    with session_scope() as session:
        claim = service.claim(session, project_id=project_id)
    if claim is None:
        return False
    with session_scope(readonly=True) as session:
        data = service.load(session, project_id=project_id)
    fitted = service.compute(data)
    with session_scope() as session:
        service.store(session, fitted)
    with session_scope() as session:
        service.release(session, project_id=project_id, claim=claim)
    with session_scope() as session:  # people ranked more: measure the judges against them
        enforce_agreement_floor(session, project_id=project_id)
    return True

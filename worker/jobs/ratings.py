"""The debounced ratings recomputation as a plain function (the `ratings.recompute` task calls
it; tests call it directly). See app/ratings/service.py for the debounce protocol.
"""

from __future__ import annotations

from app.db import session_scope
from app.ratings import service


def recompute_if_dirty(project_id: int) -> bool:
    """Claim the project's marker and refit; False when there was nothing to do.

    Three short transactions (claim, load, store), so submits wait for the claim only, never
    for the load or the fit. If the fit fails,
    the exception propagates (the task fails and is logged) and the marker stays clear: the
    next submit sets it and the next run refits from all comparisons, losing nothing.
    """
    with session_scope() as session:
        if not service.claim(session, project_id=project_id):
            return False
    with session_scope(readonly=True) as session:
        data = service.load(session, project_id=project_id)
    fitted = service.compute(data)
    with session_scope() as session:
        service.store(session, fitted)
    return True

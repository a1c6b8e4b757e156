"""The debounced ratings recomputation as a plain function (the `ratings.recompute` task calls
it; tests call it directly). See app/ratings/service.py for the debounce protocol.
"""

from __future__ import annotations

from app.db import session_scope
from app.ratings import service


def recompute_if_dirty(project_id: int) -> bool:
    """Claim the project's marker and refit; False when there was nothing to do.

    Two short transactions around the fit, so submits never wait for it. If the fit fails,
    the exception propagates (the task fails and is logged) and the marker stays clear: the
    next submit sets it and the next run refits from all comparisons, losing nothing.
    """
    with session_scope() as session:
        data = service.claim_and_load(session, project_id=project_id)
    if data is None:
        return False
    fitted = service.compute(data)
    with session_scope() as session:
        service.store(session, fitted)
    return True

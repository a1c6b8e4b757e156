"""Seeds for work started without one: fixed by what the seed is for and its row's id."""

from __future__ import annotations

import hashlib


def derived_seed(kind: str, row_id: int) -> int:
    """A 31-bit seed from (kind, id): every round and every sampling job draws fresh
    randomness (a re-run after a rejection is a new try), and the same row always draws the
    same, so a run can be reproduced from its id."""
    digest = hashlib.blake2b(f"{kind}:{row_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF

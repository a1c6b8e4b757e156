"""The built-in round types, one module each, in the order the form and the API list them.

A new type is a module like these (its config model, its stages, its trainer, what it sizes
and adds to the gate) added to BUILTIN; the rounds table stores its name as it is (no
migration); `app.rounds.registry` is what the rest of the code reads.
"""

from __future__ import annotations

from app.rounds.types import dpo, reward_grpo, reward_ppo, reward_rloo, sft

BUILTIN = (
    reward_ppo.ROUND_TYPE,
    reward_rloo.ROUND_TYPE,
    reward_grpo.ROUND_TYPE,
    sft.ROUND_TYPE,
    dpo.ROUND_TYPE,
)

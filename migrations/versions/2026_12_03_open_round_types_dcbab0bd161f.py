"""open round types: a round stores any registered type's name, not one of three built-ins

Revision ID: dcbab0bd161f
Revises: b8d4f02c6e31
Create Date: 2026-12-03 08:45:00

Round types are plug-ins (`app.rounds.registry`), checked when a round starts; the CHECK that
listed the built-in names made every new type a migration. `training_rounds.type` stays a
VARCHAR, widened from 20 to 40 characters (the registry refuses longer names), without the
CHECK `ck_training_rounds_round_type`.

The downgrade restores the CHECK. It stops with an error naming them when rounds hold a type
other than the three built-ins: delete those rounds first.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dcbab0bd161f"
down_revision: str | None = "b8d4f02c6e31"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUILTIN_TYPES = ("sft", "reward_ppo", "dpo")
OPEN_TYPE = sa.String(length=40)


def _closed_type() -> sa.Enum:
    """The column as the initial schema made it: VARCHAR(20) with a CHECK of the built-ins."""
    return sa.Enum(
        *BUILTIN_TYPES, name="round_type", native_enum=False, create_constraint=True, length=20
    )


def upgrade() -> None:
    # Changing the type drops the old type's CHECK (recreating the table on SQLite).
    with op.batch_alter_table("training_rounds", schema=None) as batch_op:
        batch_op.alter_column(
            "type", existing_type=_closed_type(), type_=OPEN_TYPE, existing_nullable=False
        )


def downgrade() -> None:
    rounds = sa.table("training_rounds", sa.column("type", sa.String))
    query = sa.select(rounds.c.type).where(rounds.c.type.not_in(BUILTIN_TYPES)).distinct()
    others = op.get_bind().execute(query).scalars().all()
    if others:
        raise RuntimeError(
            f"Rounds of type {', '.join(sorted(others))} cannot be stored once the rounds table "
            f"accepts only {', '.join(BUILTIN_TYPES)}: delete those rounds before downgrading"
        )
    with op.batch_alter_table("training_rounds", schema=None) as batch_op:
        batch_op.alter_column(
            "type", existing_type=OPEN_TYPE, type_=_closed_type(), existing_nullable=False
        )

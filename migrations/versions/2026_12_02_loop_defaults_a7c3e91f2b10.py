"""loop by default: needs_more_data rounds, stop strings, repeated samples, human verdicts

Revision ID: a7c3e91f2b10
Revises: df360d1a3315
Create Date: 2026-12-02 13:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a7c3e91f2b10"
down_revision: str | None = "df360d1a3315"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATES = (
    "queued", "reward_model", "policy", "evaluating", "sampling", "done", "rejected", "failed",
    "cancelled",
)  # fmt: skip
NEW_STATES = (*OLD_STATES, "needs_more_data")
OLD_ACTIVE = "state NOT IN ('done', 'rejected', 'failed', 'cancelled')"
NEW_ACTIVE = "state NOT IN ('done', 'rejected', 'failed', 'cancelled', 'needs_more_data')"


def _state_enum(states: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(
        *states, name="round_state", native_enum=False, create_constraint=True, length=20
    )


def _swap_round_states(old: tuple[str, ...], new: tuple[str, ...], old_where: str,
                       new_where: str) -> None:
    with op.batch_alter_table("training_rounds", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_training_rounds_one_active",
            sqlite_where=sa.text(old_where),
            postgresql_where=sa.text(old_where),
        )
        batch_op.alter_column(
            "state", existing_type=_state_enum(old), type_=_state_enum(new), existing_nullable=False
        )
        batch_op.create_index(
            "uq_training_rounds_one_active",
            ["project_id"],
            unique=True,
            sqlite_where=sa.text(new_where),
            postgresql_where=sa.text(new_where),
        )


def upgrade() -> None:
    _swap_round_states(OLD_STATES, NEW_STATES, OLD_ACTIVE, NEW_ACTIVE)
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stop_strings", json_type, nullable=True))
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "repeats_other_version", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    with op.batch_alter_table("policy_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("human_verdict", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("policy_versions", schema=None) as batch_op:
        batch_op.drop_column("human_verdict")
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_column("repeats_other_version")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("stop_strings")
    op.execute("UPDATE training_rounds SET state = 'rejected' WHERE state = 'needs_more_data'")
    _swap_round_states(NEW_STATES, OLD_STATES, NEW_ACTIVE, OLD_ACTIVE)

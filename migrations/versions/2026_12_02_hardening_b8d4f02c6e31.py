"""hardening: long prompts (project policy, token counts), one-line failures with details

Revision ID: b8d4f02c6e31
Revises: a7c3e91f2b10
Create Date: 2026-12-02 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b8d4f02c6e31"
down_revision: str | None = "a7c3e91f2b10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "long_prompts", sa.String(length=16), nullable=False, server_default="truncate"
            )
        )
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_count", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("too_long", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("training_rounds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_detail", sa.Text(), nullable=True))
    with op.batch_alter_table("sampling_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("error_detail", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sampling_jobs", schema=None) as batch_op:
        batch_op.drop_column("error_detail")
    with op.batch_alter_table("training_rounds", schema=None) as batch_op:
        batch_op.drop_column("error_detail")
    with op.batch_alter_table("prompts", schema=None) as batch_op:
        batch_op.drop_column("too_long")
        batch_op.drop_column("token_count")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("long_prompts")

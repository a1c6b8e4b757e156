"""judges: a relative floor (the judge against people beside people against each other)

Revision ID: 5e2d9a71c4b8
Revises: 3c13bbf8375c
Create Date: 2026-12-04 21:15:00

An absolute agreement floor paused good and bad judges alike when people themselves agree
little; `relative_floor` compares a judge with a typical person instead (issue 23). Existing
judges get the default 0.5 and keep their absolute floor. The server default only fills
existing rows and is dropped after: an explicit NULL (no relative floor) must stay NULL, and
the ORM leaves a None out of an INSERT when the column has a server default.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e2d9a71c4b8"
down_revision: str | None = "3c13bbf8375c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("judges", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("relative_floor", sa.Double(), nullable=True, server_default="0.5")
        )
    with op.batch_alter_table("judges", schema=None) as batch_op:
        batch_op.alter_column("relative_floor", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("judges", schema=None) as batch_op:
        batch_op.drop_column("relative_floor")

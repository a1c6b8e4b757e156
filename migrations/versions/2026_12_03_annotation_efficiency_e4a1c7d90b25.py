"""annotation efficiency: exclusions apart from membership, annotator reliability, gold tasks,
active selection, card positions, snapshot weights

Revision ID: e4a1c7d90b25
Revises: dcbab0bd161f
Create Date: 2026-12-03 16:30:00

Exclusions move from `project_members.excluded`/`excluded_reason` to `annotator_exclusions`
(copied over), so an excluded annotator can also be removed from the project. Comparisons
recorded before this revision have no card positions (NULL: left out of the position-bias
figures). The downgrade copies exclusions back onto memberships; an exclusion whose member
was removed is lost there, as that schema cannot hold it.
"""

from collections.abc import Sequence

import sqlalchemy as sa

import app.db
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e4a1c7d90b25"
down_revision: str | None = "dcbab0bd161f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = app.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    op.create_table(
        "annotator_exclusions",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("excluded_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["excluded_by_id"], ["users.id"],
            name=op.f("fk_annotator_exclusions_excluded_by_id_users"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"],
            name=op.f("fk_annotator_exclusions_project_id_projects"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"],
            name=op.f("fk_annotator_exclusions_user_id_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "user_id", name=op.f("pk_annotator_exclusions")),
    )  # fmt: skip
    op.create_table(
        "annotator_reliability",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("reliability", sa.Double(), nullable=False),
        sa.Column("lower", sa.Double(), nullable=False),
        sa.Column("upper", sa.Double(), nullable=False),
        sa.Column("comparisons", sa.Integer(), nullable=False),
        sa.Column("shared_tasks", sa.Integer(), nullable=False),
        sa.Column("gold_answered", sa.Integer(), nullable=False),
        sa.Column("gold_correct", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("flag", sa.String(length=16), nullable=True),
        sa.Column("evidence", sa.String(length=500), nullable=True),
        sa.Column("fitted_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(
            "reliability >= 0 AND reliability <= 1",
            name=op.f("ck_annotator_reliability_reliability_range"),
        ),
        sa.CheckConstraint("weight >= 0", name=op.f("ck_annotator_reliability_weight_non_negative")),
        sa.CheckConstraint(
            "flag IN ('reversed', 'chance')", name=op.f("ck_annotator_reliability_flag_kind")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"],
            name=op.f("fk_annotator_reliability_project_id_projects"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"],
            name=op.f("fk_annotator_reliability_user_id_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "user_id", name=op.f("pk_annotator_reliability")),
    )  # fmt: skip

    members = sa.table(
        "project_members",
        sa.column("project_id", sa.Integer),
        sa.column("user_id", sa.Integer),
        sa.column("excluded", sa.Boolean),
        sa.column("excluded_reason", sa.String),
        sa.column("created_at", UTC_DATETIME),
    )
    exclusions = sa.table(
        "annotator_exclusions",
        sa.column("project_id", sa.Integer),
        sa.column("user_id", sa.Integer),
        sa.column("reason", sa.String),
        sa.column("created_at", UTC_DATETIME),
    )
    op.execute(
        exclusions.insert().from_select(
            ["project_id", "user_id", "reason", "created_at"],
            sa.select(
                members.c.project_id, members.c.user_id, members.c.excluded_reason,
                members.c.created_at,
            ).where(members.c.excluded == sa.true()),
        )
    )  # fmt: skip
    with op.batch_alter_table("project_members", schema=None) as batch_op:
        batch_op.drop_column("excluded_reason")
        batch_op.drop_column("excluded")

    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reliability_weighting", sa.Boolean(), server_default=sa.true(),
                      nullable=False)
        )  # fmt: skip
        batch_op.add_column(
            sa.Column("reliability_min_tasks", sa.Integer(), server_default="10", nullable=False)
        )
        batch_op.add_column(
            sa.Column("gold_rate", sa.Double(), server_default="0.1", nullable=False)
        )
        batch_op.add_column(
            sa.Column("selection", sa.String(length=16), server_default="uniform", nullable=False)
        )
        batch_op.add_column(
            sa.Column("uniform_share", sa.Double(), server_default="0.2", nullable=False)
        )
        batch_op.add_column(
            sa.Column("position_correction", sa.Boolean(), server_default=sa.true(),
                      nullable=False)
        )  # fmt: skip
        batch_op.create_check_constraint("gold_rate_range", "gold_rate >= 0 AND gold_rate <= 0.5")
        batch_op.create_check_constraint(
            "uniform_share_range", "uniform_share >= 0 AND uniform_share <= 1"
        )
        batch_op.create_check_constraint("selection_kind", "selection IN ('uniform', 'active')")
        batch_op.create_check_constraint(
            "reliability_min_tasks_non_negative", "reliability_min_tasks >= 0"
        )

    with op.batch_alter_table("ranking_tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("gold", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("gold_groups", json_type, nullable=True))
        batch_op.add_column(sa.Column("gold_bad_sample_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("selection_reason", sa.String(length=16), server_default="uniform",
                      nullable=False)
        )  # fmt: skip
        batch_op.create_foreign_key(
            batch_op.f("fk_ranking_tasks_gold_bad_sample_id_samples"), "samples",
            ["gold_bad_sample_id"], ["id"], ondelete="SET NULL",
        )  # fmt: skip
        batch_op.create_check_constraint(
            "selection_reason_kind", "selection_reason IN ('uniform', 'uncertainty', 'undecided')"
        )

    with op.batch_alter_table("comparisons", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("gold", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("winner_position", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("loser_position", sa.Integer(), nullable=True))

    with op.batch_alter_table("snapshot_comparisons", schema=None) as batch_op:
        batch_op.add_column(sa.Column("weight", sa.Double(), server_default="1", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("snapshot_comparisons", schema=None) as batch_op:
        batch_op.drop_column("weight")
    with op.batch_alter_table("comparisons", schema=None) as batch_op:
        batch_op.drop_column("loser_position")
        batch_op.drop_column("winner_position")
        batch_op.drop_column("gold")
    with op.batch_alter_table("ranking_tasks", schema=None) as batch_op:
        batch_op.drop_constraint("selection_reason_kind", type_="check")
        batch_op.drop_constraint(
            batch_op.f("fk_ranking_tasks_gold_bad_sample_id_samples"), type_="foreignkey"
        )
        batch_op.drop_column("selection_reason")
        batch_op.drop_column("gold_bad_sample_id")
        batch_op.drop_column("gold_groups")
        batch_op.drop_column("gold")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        for name in (
            "reliability_min_tasks_non_negative", "selection_kind", "uniform_share_range",
            "gold_rate_range",
        ):  # fmt: skip
            batch_op.drop_constraint(name, type_="check")
        for column in (
            "position_correction", "uniform_share", "selection", "gold_rate",
            "reliability_min_tasks", "reliability_weighting",
        ):  # fmt: skip
            batch_op.drop_column(column)

    with op.batch_alter_table("project_members", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("excluded", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("excluded_reason", sa.String(length=500), nullable=True))
    members = sa.table(
        "project_members",
        sa.column("project_id", sa.Integer),
        sa.column("user_id", sa.Integer),
        sa.column("excluded", sa.Boolean),
        sa.column("excluded_reason", sa.String),
    )
    exclusions = sa.table(
        "annotator_exclusions",
        sa.column("project_id", sa.Integer),
        sa.column("user_id", sa.Integer),
        sa.column("reason", sa.String),
    )
    match = sa.and_(
        exclusions.c.project_id == members.c.project_id, exclusions.c.user_id == members.c.user_id
    )
    op.execute(
        members.update()
        .where(sa.exists().where(match))
        .values(
            excluded=sa.true(),
            excluded_reason=sa.select(exclusions.c.reason).where(match).scalar_subquery(),
        )
    )
    op.drop_table("annotator_reliability")
    op.drop_table("annotator_exclusions")

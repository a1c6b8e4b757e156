"""model judges (RLAIF) and generation backends

Revision ID: 3c13bbf8375c
Revises: e4a1c7d90b25
Create Date: 2026-12-04 16:29:54

A judge is a `users` row of kind 'model' plus a `judges` row saying how it ranks; its
rankings and comparisons are marked `source='ai'`. Rows recorded before this revision are all
human (the server defaults). Projects gain the judge settings (suggestions, training weight,
pure RLAIF, figures) and the generation backend settings.
"""

from collections.abc import Sequence

import sqlalchemy as sa

import app.db
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "3c13bbf8375c"
down_revision: str | None = "e4a1c7d90b25"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('judges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('backend', sa.String(length=16), nullable=False),
    sa.Column('model', sa.String(length=500), nullable=False),
    sa.Column('base_url', sa.String(length=500), nullable=True),
    sa.Column('api_key_env', sa.String(length=128), nullable=True),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('prompt_template', sa.Text(), nullable=False),
    sa.Column('principles', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('prompt_version', sa.Integer(), nullable=False),
    sa.Column('overlap', sa.String(length=16), nullable=False),
    sa.Column('share', sa.Double(), nullable=False),
    sa.Column('position_check_share', sa.Double(), nullable=False),
    sa.Column('concurrency', sa.Integer(), nullable=False),
    sa.Column('requests_per_minute', sa.Integer(), nullable=True),
    sa.Column('timeout_s', sa.Double(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('agreement_floor', sa.Double(), nullable=True),
    sa.Column('floor_min_pairs', sa.Integer(), nullable=False),
    sa.Column('flag_harm', sa.Boolean(), nullable=False),
    sa.Column('options', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('paused_reason', sa.String(length=500), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("backend IN ('hf', 'openai', 'simulated')", name=op.f('ck_judges_backend_kind')),
    sa.CheckConstraint("method IN ('listwise', 'pairwise', 'logprob')", name=op.f('ck_judges_method_kind')),
    sa.CheckConstraint("overlap IN ('all', 'unreached')", name=op.f('ck_judges_overlap_kind')),
    sa.CheckConstraint("state IN ('active', 'paused')", name=op.f('ck_judges_state_kind')),
    sa.CheckConstraint('concurrency >= 1', name=op.f('ck_judges_concurrency_positive')),
    sa.CheckConstraint('max_attempts >= 1', name=op.f('ck_judges_max_attempts_positive')),
    sa.CheckConstraint('position_check_share >= 0 AND position_check_share <= 1', name=op.f('ck_judges_position_check_share_range')),
    sa.CheckConstraint('share > 0 AND share <= 1', name=op.f('ck_judges_share_range')),
    sa.CheckConstraint('timeout_s > 0', name=op.f('ck_judges_timeout_positive')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_judges_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_judges_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_judges')),
    sa.UniqueConstraint('user_id', name=op.f('uq_judges_user_id'))
    )
    with op.batch_alter_table('judges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_judges_project_id'), ['project_id'], unique=False)

    op.create_table('judge_task_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('judge_id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=1000), nullable=True),
    sa.Column('flipped_pairs', sa.Integer(), nullable=True),
    sa.Column('total_pairs', sa.Integer(), nullable=True),
    sa.Column('elapsed_ms', sa.Integer(), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("outcome IN ('ranked', 'skipped', 'position_check')", name=op.f('ck_judge_task_log_outcome_kind')),
    sa.ForeignKeyConstraint(['judge_id'], ['judges.id'], name=op.f('fk_judge_task_log_judge_id_judges'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['task_id'], ['ranking_tasks.id'], name=op.f('fk_judge_task_log_task_id_ranking_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_judge_task_log'))
    )
    with op.batch_alter_table('judge_task_log', schema=None) as batch_op:
        batch_op.create_index('ix_judge_task_log_judge_task', ['judge_id', 'task_id'], unique=False)

    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('suggestion', sa.String(length=8), nullable=True))
        batch_op.create_check_constraint('suggestion_kind', "suggestion IN ('shown', 'hidden')")

    with op.batch_alter_table('comparisons', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=8), server_default='human', nullable=False))
        batch_op.create_check_constraint('source_kind', "source IN ('human', 'ai')")

    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('judge_suggestions', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('suggestion_control_share', sa.Double(), server_default='0.25', nullable=False))
        batch_op.add_column(sa.Column('judge_weight', sa.Double(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('judge_only', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('judges_in_human_figures', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('generation_backend', sa.String(length=16), server_default='hf', nullable=False))
        batch_op.add_column(sa.Column('generation_base_url', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('generation_model', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('generation_api_key_env', sa.String(length=128), nullable=True))
        batch_op.create_check_constraint(
            'suggestion_control_share_range',
            'suggestion_control_share >= 0 AND suggestion_control_share <= 1',
        )
        batch_op.create_check_constraint('judge_weight_non_negative', 'judge_weight >= 0')
        batch_op.create_check_constraint(
            'generation_backend_kind', "generation_backend IN ('hf', 'openai', 'vllm')"
        )

    with op.batch_alter_table('rankings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=8), server_default='human', nullable=False))
        batch_op.add_column(sa.Column('judge_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('judge_prompt_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('suggestion', sa.String(length=8), nullable=True))
        batch_op.create_check_constraint('source_kind', "source IN ('human', 'ai')")
        batch_op.create_check_constraint('suggestion_kind', "suggestion IN ('shown', 'hidden')")
        batch_op.create_foreign_key(batch_op.f('fk_rankings_judge_id_judges'), 'judges', ['judge_id'], ['id'], ondelete='SET NULL')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=8), server_default='human', nullable=False))
        batch_op.create_check_constraint('kind_kind', "kind IN ('human', 'model')")



def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('kind_kind', type_='check')
        batch_op.drop_column('kind')

    with op.batch_alter_table('rankings', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_rankings_judge_id_judges'), type_='foreignkey')
        batch_op.drop_constraint('source_kind', type_='check')
        batch_op.drop_constraint('suggestion_kind', type_='check')
        batch_op.drop_column('suggestion')
        batch_op.drop_column('judge_prompt_version')
        batch_op.drop_column('judge_id')
        batch_op.drop_column('source')

    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_constraint(
            'suggestion_control_share_range', type_='check'
        )
        batch_op.drop_constraint('judge_weight_non_negative', type_='check')
        batch_op.drop_constraint('generation_backend_kind', type_='check')
        batch_op.drop_column('generation_api_key_env')
        batch_op.drop_column('generation_model')
        batch_op.drop_column('generation_base_url')
        batch_op.drop_column('generation_backend')
        batch_op.drop_column('judges_in_human_figures')
        batch_op.drop_column('judge_only')
        batch_op.drop_column('judge_weight')
        batch_op.drop_column('suggestion_control_share')
        batch_op.drop_column('judge_suggestions')

    with op.batch_alter_table('comparisons', schema=None) as batch_op:
        batch_op.drop_constraint('source_kind', type_='check')
        batch_op.drop_column('source')

    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.drop_constraint('suggestion_kind', type_='check')
        batch_op.drop_column('suggestion')

    with op.batch_alter_table('judge_task_log', schema=None) as batch_op:
        batch_op.drop_index('ix_judge_task_log_judge_task')

    op.drop_table('judge_task_log')
    with op.batch_alter_table('judges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_judges_project_id'))

    op.drop_table('judges')

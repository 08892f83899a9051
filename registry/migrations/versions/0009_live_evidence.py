"""live evidence: domains' monitoring settings, shadow tallies and disagreements, drift
points, and what triggered the run that registered a version

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import registry.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _versions(column: str, table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["prompt_versions.id"], name=op.f(f"fk_{table}_{column}_prompt_versions")
    )


def _domain(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["domain_id"], ["domains.id"], name=op.f(f"fk_{table}_domain_id_domains")
    )


def upgrade() -> None:
    utc = registry.models.UTCDateTime()
    op.create_table(
        "domain_monitoring",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", utc, nullable=False),
        sa.Column("last_retrain_at", utc, nullable=True),
        _domain("domain_monitoring"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_monitoring")),
        sa.UniqueConstraint("domain_id", name=op.f("uq_domain_monitoring_domain_id")),
    )
    op.create_table(
        "shadow_stats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("production_version_id", sa.Integer(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("agreed", sa.BigInteger(), nullable=False),
        sa.Column("similarity_sum", sa.Float(), nullable=False),
        sa.Column("similarity_n", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("dropped", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.JSON(), nullable=False),
        sa.Column("shadow_values", sa.JSON(), nullable=False),
        sa.Column("production_values", sa.JSON(), nullable=False),
        sa.Column("shadow_confidence", sa.JSON(), nullable=False),
        sa.Column("production_confidence", sa.JSON(), nullable=False),
        sa.Column("first_at", utc, nullable=False),
        sa.Column("last_at", utc, nullable=False),
        _domain("shadow_stats"),
        _versions("version_id", "shadow_stats"),
        _versions("production_version_id", "shadow_stats"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_stats")),
        sa.UniqueConstraint("version_id", "production_version_id", name="uq_shadow_stats_pair"),
    )
    op.create_table(
        "shadow_disagreements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("production_version_id", sa.Integer(), nullable=False),
        sa.Column("at", utc, nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("production_value", sa.Text(), nullable=True),
        sa.Column("production_score", sa.Float(), nullable=True),
        sa.Column("shadow_value", sa.Text(), nullable=True),
        sa.Column("shadow_score", sa.Float(), nullable=True),
        sa.Column("thumbnail", sa.LargeBinary(), nullable=True),
        _domain("shadow_disagreements"),
        _versions("version_id", "shadow_disagreements"),
        _versions("production_version_id", "shadow_disagreements"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_disagreements")),
    )
    with op.batch_alter_table("shadow_disagreements") as batch:
        batch.create_index(
            batch.f("ix_shadow_disagreements_version_id"), ["version_id"], unique=False
        )
    op.create_table(
        "drift_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("at", utc, nullable=False),
        sa.Column("drift", sa.Float(), nullable=False),
        sa.Column("components", sa.JSON(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        _domain("drift_points"),
        _versions("version_id", "drift_points"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_points")),
    )
    with op.batch_alter_table("drift_points") as batch:
        batch.create_index(batch.f("ix_drift_points_domain_id"), ["domain_id"], unique=False)
    # a plain ALTER TABLE, as in 0005: a batch copy of prompt_versions would drop a table
    # that other tables' rows reference
    with op.batch_alter_table("prompt_versions", recreate="never") as batch:
        batch.add_column(sa.Column("trigger", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prompt_versions", recreate="never") as batch:
        batch.drop_column("trigger")
    with op.batch_alter_table("drift_points") as batch:
        batch.drop_index(batch.f("ix_drift_points_domain_id"))
    op.drop_table("drift_points")
    with op.batch_alter_table("shadow_disagreements") as batch:
        batch.drop_index(batch.f("ix_shadow_disagreements_version_id"))
    op.drop_table("shadow_disagreements")
    op.drop_table("shadow_stats")
    op.drop_table("domain_monitoring")

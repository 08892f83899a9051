"""prompt versions store the primary metric they are judged by

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


# A plain ALTER TABLE on both backends (SQLite 3.35+ drops columns in place): a batch
# "move and copy" would drop prompt_versions, which the rows of evaluations, aliases and
# requests reference, and SQLite's foreign keys refuse that once versions exist.


def upgrade() -> None:
    with op.batch_alter_table("prompt_versions", recreate="never") as batch:
        batch.add_column(sa.Column("primary_metric", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prompt_versions", recreate="never") as batch:
        batch.drop_column("primary_metric")

"""data versions remember the rows an import added to them and where those came from

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


# A plain ALTER TABLE on both backends, as in 0005: nothing is copied or recreated.


def upgrade() -> None:
    with op.batch_alter_table("data_versions", recreate="never") as batch:
        batch.add_column(sa.Column("rows_added", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("added_from", sa.String(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("data_versions", recreate="never") as batch:
        batch.drop_column("added_from")
        batch.drop_column("rows_added")

"""data versions remember what they were validated against; alias history is append-only
in the database itself (triggers refuse UPDATE and DELETE)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


APPEND_ONLY = "alias_history is append-only: its rows are never updated or deleted"


def upgrade() -> None:
    with op.batch_alter_table("data_versions") as batch:
        batch.add_column(sa.Column("validation_key", sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION alias_history_append_only() RETURNS trigger AS $$ BEGIN "
            f"RAISE EXCEPTION '{APPEND_ONLY}'; END; $$ LANGUAGE plpgsql"
        )
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER alias_history_no_{event.lower()} BEFORE {event} ON alias_history "
                "FOR EACH ROW EXECUTE FUNCTION alias_history_append_only()"
            )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER alias_history_no_{event.lower()} BEFORE {event} ON alias_history "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )


def downgrade() -> None:
    for event in ("update", "delete"):
        op.execute(
            f"DROP TRIGGER IF EXISTS alias_history_no_{event}"
            + (" ON alias_history" if op.get_bind().dialect.name == "postgresql" else "")
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS alias_history_append_only()")
    with op.batch_alter_table("data_versions") as batch:
        batch.drop_column("validation_key")

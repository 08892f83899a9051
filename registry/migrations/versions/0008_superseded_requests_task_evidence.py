"""promotion requests can be superseded by a newer request for the same version and alias;
stored predictions keep what their task's contract says about them

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLE = "promotion_requests"
CHECK = "ck_promotion_requests_status"
COLUMN = "superseded_by_id"
FOREIGN_KEY = "fk_promotion_requests_superseded_by_id_promotion_requests"
BEFORE = "status IN ('pending', 'approved', 'rejected')"
AFTER = "status IN ('pending', 'approved', 'rejected', 'superseded')"


# SQLite cannot alter a CHECK constraint, and its "move and copy" would drop
# promotion_requests, which alias_history rows reference (foreign keys are on, so SQLite
# refuses). Widening a CHECK changes nothing on disk, so the table's stored definition is
# edited in place: the procedure SQLite documents for such changes (lang_altertable.html,
# "making other kinds of table schema changes"), inside the migration's transaction.


def _sqlite_check(old: str, new: str) -> None:
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
    ).scalar_one()
    if old not in sql:
        raise RuntimeError(f"{TABLE}: expected the constraint {old!r} in {sql!r}")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
        (sql.replace(old, new), TABLE),
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    with op.batch_alter_table("predictions", recreate="never") as batch:
        batch.add_column(sa.Column("task", sa.JSON(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"ALTER TABLE {TABLE} ADD COLUMN {COLUMN} INTEGER "
            f"CONSTRAINT {FOREIGN_KEY} REFERENCES {TABLE} (id)"
        )
        _sqlite_check(BEFORE, AFTER)
        return
    op.add_column(TABLE, sa.Column(COLUMN, sa.Integer(), nullable=True))
    op.create_foreign_key(op.f(FOREIGN_KEY), TABLE, TABLE, [COLUMN], ["id"])
    op.drop_constraint(op.f(CHECK), TABLE, type_="check")
    op.create_check_constraint(op.f(CHECK), TABLE, AFTER)


def downgrade() -> None:
    with op.batch_alter_table("predictions", recreate="never") as batch:
        batch.drop_column("task")
    # a superseded request was never decided: it reads as rejected, with its comment
    op.execute(f"UPDATE {TABLE} SET status = 'rejected' WHERE status = 'superseded'")
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_check(AFTER, BEFORE)
        op.execute(f"UPDATE {TABLE} SET {COLUMN} = NULL")
        op.execute(f"ALTER TABLE {TABLE} DROP COLUMN {COLUMN}")
        return
    op.drop_constraint(op.f(CHECK), TABLE, type_="check")
    op.create_check_constraint(op.f(CHECK), TABLE, BEFORE)
    op.drop_constraint(op.f(FOREIGN_KEY), TABLE, type_="foreignkey")
    op.drop_column(TABLE, COLUMN)

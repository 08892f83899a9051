"""Apply the Alembic migrations programmatically (`mpt registry upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from .db import get_engine
from .errors import RegistryError

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _with_connection(url: str, action) -> None:
    config = alembic_config(url)
    try:
        with get_engine(url).begin() as connection:
            config.attributes["connection"] = connection
            action(config)
    except OperationalError as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise RegistryError(
            f"registry database {shown} is not reachable: {reason}. Fix: start it, or set "
            "MPT_DATABASE_URL to a reachable database"
        ) from None


def upgrade(url: str, revision: str = "head") -> None:
    _with_connection(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str = "base") -> None:
    _with_connection(url, lambda config: command.downgrade(config, revision))


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()

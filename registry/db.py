"""Engines and the one managed session scope. The boundary (API call, CLI command, flow
task) owns the transaction; data functions take a session and never commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .errors import ConflictError, RegistryError


def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    """One engine per URL per process. SQLite: foreign keys on, waits for locks."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args = {"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """Commit on success, roll back on any error; driver errors become registry errors."""
    session = sessionmaker(get_engine(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(
            f"the registry refused a conflicting write ({exc.orig}); another change may have "
            "won a race; re-read and retry"
        ) from exc
    except OperationalError as exc:
        session.rollback()
        raise RegistryError(
            f"registry database {make_url(url).render_as_string(hide_password=True)} "
            f"failed: {exc.orig}. HINT: run `mpt registry upgrade` if the schema is missing"
        ) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()

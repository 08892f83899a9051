"""Engines and the one managed session scope. The boundary (API call, CLI command, flow
task) owns the transaction; data functions take a session and never commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .errors import ConflictError, InvalidRecord, RegistryUnavailable, short_reason
from .sqlite_file import watch


def _sqlite_pragmas(dbapi_connection, connection_record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    """One engine per URL per process. SQLite: foreign keys on, waits for locks, follows
    its file when it is deleted or replaced (`sqlite_file`). PostgreSQL: each pooled
    connection is pinged before use, so a restarted server is reconnected to."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            watch(engine, parsed.database)
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
    except DataError as exc:
        session.rollback()
        raise InvalidRecord(
            f"the registry database refused a value ({exc.orig}); the value is out of range "
            "or of the wrong type: check it"
        ) from exc
    except DBAPIError as exc:  # cannot connect, cannot read, schema missing, file damaged
        session.rollback()
        raise RegistryUnavailable(
            f"registry database {make_url(url).render_as_string(hide_password=True)} "
            f"failed: {exc.orig}. HINT: {_hint(str(exc.orig))}",
            reason=short_reason(exc),
        ) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _hint(error: str) -> str:
    """What to do about a driver error, from its text (drivers share no error codes)."""
    lowered = error.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return "run `mpt registry upgrade` if the schema is missing"
    if "not a database" in lowered or "malformed" in lowered:
        return (
            "the file is damaged or is not a registry database: restore it from a backup, or "
            "point MPT_DATABASE_URL at the right one"
        )
    return (
        "check that the database is running and reachable at MPT_DATABASE_URL, and migrated "
        "(`mpt registry upgrade`)"
    )

"""The file behind a SQLite engine, looked at on every connection checkout.

A SQLite connection keeps reading the file it opened after that file is deleted or
replaced: pooled connections hold the old inode. Left alone, a long-running server would
answer from a database that is gone, and never see the one put in its place. So each
connection remembers which file (device, inode) it opened, and a checkout compares it
with what the path names now: a replaced file drops the connection for a fresh one on the
new file; a missing file is a `RegistryUnavailable` naming it. A path this engine has
never opened may be created (a fresh embedded registry); one it has read is never
silently re-created empty.

One `os.stat` per checkout (one per transaction) is the whole cost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError

from .errors import RegistryUnavailable

FileId = tuple[int, int]
_OPENED = "mpt_sqlite_file"  # key of the connection record's info: the FileId it opened


class SqliteFile:
    """The database file of one engine, and whether the engine has opened it yet."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.opened = False

    def current(self) -> FileId | None:
        """(device, inode) of the file at the path now; None when there is none."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def gone(self) -> RegistryUnavailable:
        return RegistryUnavailable(
            f"registry database file {self.path} is gone (deleted or moved away) while this "
            "process was using it. Fix: put the database file back (a running server picks "
            "it up by itself), or point MPT_DATABASE_URL at where it is now",
            reason="the registry's SQLite file was deleted or moved away",
        )

    # ------------------------------------------------------------------ engine events
    def before_connect(self, dialect: Any, record: Any, cargs: Any, cparams: Any) -> None:
        if self.opened and self.current() is None:
            raise self.gone()  # else sqlite3 would create an empty database in its place

    def connected(self, dbapi_connection: Any, record: Any) -> None:
        record.info[_OPENED] = self.current()
        self.opened = True

    def checked_out(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        now = self.current()
        if now is None:
            raise self.gone()
        if now != record.info.get(_OPENED):
            # the pool drops this connection and opens the file that is there now
            raise DisconnectionError(f"registry database file {self.path} was replaced")


def watch(engine: Engine, path: str) -> SqliteFile:
    """Follow the database file at `path` on every connection of `engine`."""
    watched = SqliteFile(Path(os.path.abspath(path)))
    event.listen(engine, "do_connect", watched.before_connect)
    event.listen(engine, "connect", watched.connected)
    event.listen(engine, "checkout", watched.checked_out)
    return watched

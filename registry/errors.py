"""Errors raised by the registry. Messages name the domain, version or alias, the rule that
refused the action and what to do instead."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class of every error the registry raises on purpose."""


class NotFoundError(RegistryError, LookupError):
    """A domain, version, alias or request does not exist."""


class RuleViolation(RegistryError):
    """An action breaks a registry rule (reviewer is the requester, decision is final...)."""


class PermissionDenied(RuleViolation):
    """Authentication is on and the acting user's role does not allow the action (or the
    actor is not an active user)."""


class InvalidRecord(RegistryError, ValueError):
    """Data handed to the registry is malformed (a prediction row, a thumbnail, a name)."""


class ConflictError(RegistryError):
    """A concurrent change won; the action was not applied. Retry after re-reading."""


class ArtifactNotFoundError(NotFoundError):
    """An artifact (by sha256) is not in the artifact store."""


class ArtifactCorruptedError(RegistryError):
    """An artifact's bytes do not hash to its sha256, or its blob is not a safe artifact tar."""


class StoreError(RegistryError):
    """The artifact store could not do what was asked (I/O, S3, bad URL or argument)."""


class RegistryUnavailable(RegistryError):
    """The registry database cannot be reached or read (server down, file deleted or
    damaged). Nothing was done; the same call may succeed once the database is back.

    `reason` is the cause in words fit for a client (no database URL, path or SQL); the
    message, for logs and operators, names the database and the fix."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def short_reason(exc: BaseException) -> str:
    """`exc` in one line fit to show a client: its type and the first line of its message.

    For a database error, the driver's own error (SQLAlchemy's `orig`, also behind a
    RegistryError raised from one) instead: SQLAlchemy's text carries the SQL statement and
    its parameters, the registry's the database URL, and those belong in the log only.
    """
    if isinstance(exc, RegistryUnavailable) and exc.__cause__ is None:
        return f"{type(exc).__name__}: {exc.reason}"
    cause = exc
    for candidate in (exc, exc.__cause__ if isinstance(exc, RegistryError) else None):
        orig = getattr(candidate, "orig", None)
        if isinstance(orig, BaseException):
            cause = orig
            break
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__

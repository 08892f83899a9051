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

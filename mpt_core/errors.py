"""Errors raised by mpt_core. Each names the thing, the value, what is allowed and a fix."""

from __future__ import annotations


class MptError(Exception):
    """Base class for every error mpt_core raises on purpose."""


class UnknownNameError(MptError, KeyError):
    """A name was looked up in a registry that does not hold it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(MptError, ValueError):
    """A configuration value is out of range or inconsistent with another one."""


class DataError(MptError, ValueError):
    """An example handed to the library is unusable (missing field, unknown label...).

    `index` and `field` name the example and its field when known, for callers that report
    per item (the serving API answers with them).
    """

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None):
        super().__init__(message)
        self.index = index
        self.field = field


class BackboneMismatchError(MptError):
    """A prompt artifact was loaded on a backbone other than the one it was trained on."""


class ArtifactError(MptError):
    """A prompt artifact on disk is missing, incomplete or corrupted."""


class BackboneLoadError(MptError, OSError):
    """A backbone's weights could not be found or read."""

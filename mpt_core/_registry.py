"""A small validated name -> object mapping used for backbone families, presets and tasks."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from .errors import ConfigError, UnknownNameError

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class Registry(Generic[T]):
    """Holds named entries of one kind; unknown lookups list what is known."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if not _NAME.match(name):
            raise ConfigError(
                f"{self.kind} name {name!r} is invalid: use lower case letters, digits, '-' or '_'"
            )
        if name in self._entries:
            raise ConfigError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """`@REGISTRY.decorator("name")` registers the decorated object under `name`."""

        def wrap(entry: T) -> T:
            return self.register(name, entry)

        return wrap

    @contextmanager
    def temporarily(self, name: str, entry: T) -> Iterator[T]:
        """`entry` registered as `name` (added, or replacing what is there) for the block,
        then the registry as it was: to try a task, family or preset in a test or a
        notebook without registering it for the process."""
        before = self._entries.get(name)
        self._entries.pop(name, None)
        self.register(name, entry)
        try:
            yield entry
        finally:
            if before is None:
                self._entries.pop(name, None)
            else:
                self._entries[name] = before

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

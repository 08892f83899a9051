"""Errors the API answers with: JSON naming the item, the field, the problem and the fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mpt_core.errors import MptError


class ServingError(MptError):
    """The server cannot start or run as asked (port in use, no Ray, ...)."""


@dataclass(frozen=True)
class ItemError:
    """Why one item of a batch cannot be served."""

    index: int
    field: str
    problem: str
    fix: str
    status: int = 422

    def to_dict(self) -> dict[str, Any]:
        out = {k: printable(v) if isinstance(v, str) else v for k, v in asdict(self).items()}
        del out["status"]
        return out


def printable(text: str) -> str:
    """`text` as UTF-8 can carry it: what cannot be encoded (a lone surrogate a client sent
    as `"\\udfff"`) is written as its escape, so an error naming it can still be sent."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class ApiError(Exception):
    """Becomes `{"error": {"status", "message", "field"?, "fix"?, "items"?}}` with `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        fix: str | None = None,
        items: Sequence[ItemError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.fix = fix
        self.items = list(items)
        self.headers = headers

    @classmethod
    def for_items(cls, errors: Sequence[ItemError], total: int) -> ApiError:
        """One error for a batch with refused items: their common status, else 400."""
        statuses = {e.status for e in errors}
        status = statuses.pop() if len(statuses) == 1 else 400
        headers = {"Retry-After": "5"} if status == 503 else None
        if total == 1:
            e = errors[0]
            message = f"item {e.index} cannot be served: {e.field} {e.problem}"
        else:
            message = f"{len(errors)} of {total} items cannot be served; nothing was predicted" + (
                " (POST /v1/predict?partial=true serves the others)" if len(errors) < total else ""
            )
        return cls(status, message, items=errors, headers=headers)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "message": printable(self.message)}
        if self.field:
            body["field"] = printable(self.field)
        if self.fix:
            body["fix"] = printable(self.fix)
        if self.items:
            body["items"] = [e.to_dict() for e in self.items]
        return {"error": body}

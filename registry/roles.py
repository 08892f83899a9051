"""The roles of registry users, in order: each may do what the ones before it may."""

from __future__ import annotations

ROLES = ("viewer", "requester", "reviewer", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}


def role_at_least(role: str | None, need: str) -> bool:
    """Whether `role` ranks `need` or higher (viewer < requester < reviewer < admin); an
    unknown role ranks nothing."""
    return role in RANK and RANK[role] >= RANK[need]

"""The registry's fixed names: the alias serving and review default to, the statuses of
versions and promotion requests. No imports, so anything may use them without loading
SQLAlchemy (the CLI's start-up, review's pages)."""

from __future__ import annotations

PRODUCTION = "production"
"""The alias served by default; always protected."""
VERSION_STATUSES = ("candidate", "rejected", "archived")
REQUEST_STATUSES = ("pending", "approved", "rejected", "superseded")
"""A request is superseded when a new request for the same version and alias replaces it
because its baseline moved (its policy report went stale); like a decision, it is final."""
MAX_ID = 2**31 - 1
"""The largest version number or request id a column holds (SQL INTEGER on every backend):
anything bigger is refused at the boundary, before the database sees it."""

"""The registry's data functions, one small module per resource (after Prefect's
`server/models/<resource>.py`).

Every function takes a SQLAlchemy `Session` first, reads or writes ORM rows of
`registry.models`, and never commits: the boundary (`PromptRegistry.transaction()`, one
per public method) owns the transaction, so a caller composes several functions (a
version, its evaluations, its request and its review evidence) into one all-or-nothing
write. The rules live here, next to the rows they guard: reviewer != requester, terminal
decisions, production only through an approved request that passed its policy (or a
recorded override), compare-and-swap alias moves, append-only history, role checks.

    domains        domains by name
    data_versions  validated data versions
    versions       prompt versions and their evaluations
    aliases        aliases, their compare-and-swap move, rollback, protection
    history        the append-only alias history
    promotions     promotion requests, their policy report and decisions
    candidates     what a retrain registers, composed from the above
    users          users, roles, tokens, authorization
    sessions       browser sessions
    audit          the append-only audit log
    evidence       per-example predictions and thumbnails for reviewers
    monitoring     live evidence from servers: shadow tallies, disagreements, drift;
                   monitoring settings and the one-retrain-per-cooldown claim
"""

from . import (
    aliases,
    audit,
    candidates,
    data_versions,
    domains,
    evidence,
    history,
    monitoring,
    promotions,
    sessions,
    users,
    versions,
)

__all__ = [
    "aliases",
    "audit",
    "candidates",
    "data_versions",
    "domains",
    "evidence",
    "history",
    "monitoring",
    "promotions",
    "sessions",
    "users",
    "versions",
]

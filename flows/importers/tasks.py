"""From records to a task's rows, asking the task registry only: which tasks the fields
found can train, which columns and rows a task keeps, and what its domain.yaml declares
(the labels or answers found, through `Task.from_declaration` and `Task.declaration`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from mpt_core import TASKS
from mpt_core.errors import ConfigError
from mpt_core.support import family_tasks

from ..domains.schema import BackboneSpec
from .source import ImportFailed


def tasks_for(fields: Collection[str]) -> list[str]:
    """The registered tasks whose required example fields are all among `fields`."""
    return [name for name in TASKS if set(TASKS.get(name).contract.fields) <= set(fields)]


def choose_task(fields: Collection[str], requested: str | None, what: str) -> str:
    """`requested` if its fields were found, else the one task the fields allow, preferring
    one that runs on the default backbone family (offline, shipped)."""
    possible = tasks_for(fields)
    found = ", ".join(sorted(fields)) or "none"
    if requested is not None:
        if requested not in TASKS:
            raise ImportFailed(f"unknown task {requested!r}; allowed: {', '.join(TASKS.names())}")
        if requested not in possible:
            needs = ", ".join(TASKS.get(requested).contract.fields)
            raise ImportFailed(
                f"task {requested!r} needs the field(s) {needs}; {what} gives {found}"
                + (f": choose one of {', '.join(possible)}" if possible else "")
            )
        return requested
    if not possible:
        raise ImportFailed(f"no task trains on the fields {what} gives ({found})")
    default = family_tasks(BackboneSpec().family)
    return next((t for t in possible if t in default), possible[0])


def task_columns(task: str) -> tuple[str, ...]:
    """The example fields a task's table holds (required first)."""
    return TASKS.get(task).contract.columns


def row_key(task: str, row: Mapping[str, str]) -> tuple | None:
    """What identifies a row for `task` (None: identical rows are meaningful)."""
    key = TASKS.get(task).contract.row_key
    return None if key is None else tuple(row.get(f) for f in key)


def stratum(task: str, fields: Mapping[str, str]) -> str | None:
    """The value a split is stratified by: the task's declared value (and the value it is
    declared per); None for a task with no closed value set."""
    value_set = TASKS.get(task).contract.value_set
    if value_set is None:
        return None
    parts = ([fields.get(value_set.per, "")] if value_set.per else []) + [
        fields.get(value_set.field, "")
    ]
    return "\x1f".join(parts)


def found_values(task: str, rows: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """The declaration key of the task's value set -> the values the rows hold (sorted;
    per selector value where the set is declared per field). {} for open tasks."""
    value_set = TASKS.get(task).contract.value_set
    if value_set is None:
        return {}
    if value_set.per is None:
        return {value_set.key: sorted({r[value_set.field] for r in rows})}
    per: dict[str, set[str]] = {}
    for r in rows:
        per.setdefault(r[value_set.per], set()).add(r[value_set.field])
    return {value_set.key: {k: sorted(v) for k, v in sorted(per.items())}}


def declaration_of(task: str, rows: Sequence[Mapping[str, str]], what: str) -> dict[str, Any]:
    """What a new domain's domain.yaml declares for `task` over `rows`: the task built from
    the values found, declared back (`Task.declaration`)."""
    try:
        return TASKS.get(task).from_declaration(found_values(task, rows)).declaration()
    except ConfigError as exc:
        raise ImportFailed(
            f"the values {what} gives do not make a {task!r} domain: {exc}"
        ) from None


def undeclared(
    task: str, declared: dict[str | None, list[str]], rows: Sequence[Mapping[str, str]]
) -> list[str]:
    """Values of `rows` outside a domain's declared value set, in words (for appends)."""
    value_set = TASKS.get(task).contract.value_set
    if value_set is None:
        return []
    out = []
    for r in rows:
        selector = r.get(value_set.per) if value_set.per else None
        allowed = declared.get(selector)
        if allowed is None:
            out.append(f"{value_set.per} {selector!r}")
        elif r[value_set.field] not in allowed:
            where = f" to {selector!r}" if selector is not None else ""
            out.append(f"{value_set.field} {r[value_set.field]!r}{where}")
    return list(dict.fromkeys(out))

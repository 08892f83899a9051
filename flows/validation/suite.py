"""The checks of one domain: Great Expectations expectations built from its domain.yaml, the
image facts, and the optional extra-expectations YAML in the domain folder.

Each `Check` pairs one expectation with what a reader needs to understand its failure: the
column, the problem in words, and how to show offending rows. Great Expectations is imported
only when checks are built (it takes seconds to import).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from mpt_core.data import SPLITS
from mpt_core.errors import ConfigError

from ..yaml_files import safe_load, yaml_problem
from .gx import import_gx
from .images import fact_column
from .leakage import GROUP, LEAK, NEAR_DUPLICATE

if TYPE_CHECKING:
    from flows.domains.schema import DomainConfig

Show = Literal["value", "reason", "rows", "count", "columns", "table"]
"""How a failure is shown: offending rows with their value, rows with the reason held in
`value_column`, rows only, a row count against a minimum, the missing columns, or GX's
observed value for a table-level check."""
Severity = Literal["error", "warning"]
"""An error fails validation; a warning is reported beside a passing result."""


@dataclass(frozen=True)
class Check:
    name: str
    """Stable id, e.g. 'label_in_set', 'image_decodes', 'extra:expect_column_values_to_...'."""
    column: str | None
    """The table column a reader should look at; None for table-level checks."""
    problem: str
    """The failure in words; for 'count' checks '{observed}' stands for the count found."""
    expectation: Any
    """A great_expectations Expectation."""
    show: Show
    value_column: str | None = None
    severity: Severity = "error"


class ExtraExpectationsError(ConfigError):
    """The extra-expectations YAML of a domain cannot be used; names the file and entry."""


def required_columns(config: DomainConfig) -> list[str]:
    """image, split and the columns of every field the task's contract needs, and the
    group column when the domain names one."""
    layout = config.data
    columns = [layout.column(f) for f in ("image", "split", *config.contract.fields)]
    return columns + ([layout.group_column] if layout.group_column else [])


def declared_values(config: DomainConfig) -> set[str]:
    """Declared values (labels; questions and their answers): values the table reader must
    never take for nulls."""
    values: set[str] = set()
    for selector, allowed in config.build_task().declared_values().items():
        values |= {*allowed, *([selector] if selector is not None else [])}
    return values


def build_checks(
    config: DomainConfig, columns: Sequence[str], extra: Sequence[Check] = ()
) -> list[Check]:
    """Every check for a table with `columns` (as read, before image facts are added).
    Checks that need a missing column are left out: the required-columns check reports it."""
    present = set(columns)
    checks = [_columns_check(config, columns)]
    checks += _value_checks(config, present)
    checks += _count_checks(config, present)
    if config.data.image_column in present:
        checks += _image_checks(config, present)
    checks += _leakage_checks(config, present)
    checks += extra
    for order, check in enumerate(checks):
        check.expectation.meta["order"] = order  # results come back in another order
    return checks


def _gx():
    gx = import_gx()
    from great_expectations.expectations.row_conditions import Column

    return gx.expectations, Column


def _check(name, column, problem, expectation, show, value_column=None, severity="error"):
    expectation.meta = {"check": name, "problem": problem}
    if severity == "warning":
        from great_expectations.expectations.metadata_types import FailureSeverity

        expectation.severity = FailureSeverity.WARNING
    return Check(name, column, problem, expectation, show, value_column, severity)


def _short(values: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def _columns_check(config: DomainConfig, columns: Sequence[str]) -> Check:
    gxe, _ = _gx()
    required = required_columns(config)
    missing = [c for c in required if c not in columns]
    hints = [
        f"{found!r} looks like {want!r} (spaces or case differ)"
        for want in missing
        for found in columns
        if found.strip().lower() == want.lower()
    ]
    problem = (
        f"missing required column(s) {missing}; the table has {list(columns)}"
        + (f"; {'; '.join(hints)}" if hints else "")
        + f" (task {config.task!r} needs {required}; names are set under data: in domain.yaml)"
    )
    expectation = gxe.ExpectTableColumnsToMatchSet(column_set=required, exact_match=False)
    return _check("required_columns", None, problem, expectation, "columns")


def _value_checks(config: DomainConfig, present: set[str]) -> list[Check]:
    gxe, Column = _gx()
    layout, checks = config.data, []
    for column in required_columns(config):
        if column in present:
            expectation = gxe.ExpectColumnValuesToNotBeNull(column=column)
            checks.append(_check("not_null", column, "empty (no value)", expectation, "rows"))

    def in_set(name, column, values, problem, needs=(), **kwargs):
        if column in present and all(c in present for c in needs):
            exp = gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(values), **kwargs)
            checks.append(_check(name, column, problem, exp, "value", column))

    split, image = layout.split_column, layout.image_column
    in_set("split_in_set", split, SPLITS, f"not one of the splits {_short(SPLITS)}")
    contract, declared = config.contract, config.build_task().declared_values()
    value_set = contract.value_set
    if value_set is not None:
        column = layout.column(value_set.field)
        if value_set.per is None:
            allowed = declared.get(None, [])
            in_set(
                f"{value_set.field}_in_set",
                column,
                allowed,
                f"not in the declared {value_set.key} {_short(allowed)}",
            )
        else:
            selector = layout.column(value_set.per)
            keys = [k for k in declared if k is not None]
            in_set(
                f"{value_set.per}_in_set",
                selector,
                keys,
                f"not one of the declared {value_set.per}s {_short(keys)}",
            )
            for key, allowed in declared.items():
                in_set(
                    f"{value_set.field}_in_set",
                    column,
                    allowed,
                    f"not a declared {value_set.field} to {key!r} {_short(allowed)}",
                    row_condition=Column(selector) == key,
                    needs=(selector,),
                )
    for text in contract.text_fields:
        column = layout.column(text.field)
        if column not in present:
            continue
        bounds = getattr(config.validation, f"{text.field}_length", None)  # domain.yaml's own
        if bounds is not None:
            (low, high), source = bounds, f"validation.{text.field}_length"
        else:
            low, high, source = text.min_chars, text.max_chars, f"task {config.task!r}"
        exp = gxe.ExpectColumnValueLengthsToBeBetween(column=column, min_value=low, max_value=high)
        problem = f"with {text.field} length outside {low}..{high} characters ({source})"
        checks.append(_check(f"{text.field}_length", column, problem, exp, "value", column))
    if contract.row_key is None:  # identical rows are meaningful (several annotators)
        return checks
    key = [layout.column(f) for f in contract.row_key]
    if all(c in present for c in key):
        if len(key) == 1:
            exp = gxe.ExpectColumnValuesToBeUnique(column=key[0])
            problem = "repeat an image path" if key == [image] else f"repeat a {key[0]!r} value"
        else:
            exp = gxe.ExpectCompoundColumnsToBeUnique(column_list=key)
            problem = f"repeat an ({', '.join(key)}) combination"
        checks.append(_check("unique_image", key[0], problem, exp, "rows"))
    if len(present) > 1:
        exp = gxe.ExpectCompoundColumnsToBeUnique(column_list=sorted(present))
        checks.append(
            _check("duplicate_rows", None, "duplicated (every column equal)", exp, "rows")
        )
    return checks


def _count_checks(config: DomainConfig, present: set[str]) -> list[Check]:
    """At least `min_per_split` rows per split and `min_per_class` rows per label (or per
    answer of each question) per split: one row-count expectation per subset."""
    gxe, Column = _gx()
    layout, rules = config.data, config.validation
    split = layout.split_column
    if split not in present:
        return []
    checks = []

    def at_least(name, column, minimum, subject, source, condition):
        problem = f"{subject} has {{observed}} rows; needs at least {minimum} ({source})"
        exp = gxe.ExpectTableRowCountToBeBetween(min_value=minimum, row_condition=condition)
        checks.append(_check(name, column, problem, exp, "count"))

    for s in SPLITS:
        at_least(
            "split_rows",
            split,
            rules.min_per_split,
            f"split {s!r}",
            "validation.min_per_split",
            Column(split) == s,
        )
    value_set = config.contract.value_set
    if value_set is None:
        return checks
    column = layout.column(value_set.field)
    selector = layout.column(value_set.per) if value_set.per else None
    if column not in present or (selector and selector not in present):
        return checks
    declared = config.build_task().declared_values()
    for s in SPLITS:
        minimum = rules.min_per_class.get(s, 0)
        if minimum < 1:
            continue
        for key, allowed in declared.items():
            for value in allowed:
                condition = (Column(split) == s) & (Column(column) == value)
                subject = f"{value_set.field} {value!r}"
                if selector is not None:
                    condition = condition & (Column(selector) == key)
                    subject += f" to {key!r}"
                at_least(
                    "class_rows",
                    column,
                    minimum,
                    f"{subject} in split {s!r}",
                    f"validation.min_per_class.{s}",
                    condition,
                )
    return checks


def _image_checks(config: DomainConfig, present: set[str]) -> list[Check]:
    gxe, _ = _gx()
    image, bounds = config.data.image_column, config.validation.images
    checks = []

    def status(fact, problem):
        column = fact_column(fact)
        exp = gxe.ExpectColumnValuesToBeInSet(column=column, value_set=["ok"])
        checks.append(_check(f"image_{fact}", image, problem, exp, "reason", column))

    def between(fact, problem, low=None, high=None):
        column = fact_column(fact)
        exp = gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)
        checks.append(_check(f"image_{fact}", image, problem, exp, "value", column))

    side = f"{bounds.min_side}..{bounds.max_side} px (validation.images)"
    status("location", "image path refused")
    status("file", "image file not found")
    between("width", f"with image width outside {side}", bounds.min_side, bounds.max_side)
    between("height", f"with image height outside {side}", bounds.min_side, bounds.max_side)
    between(
        "pixels",
        f"with more than {bounds.max_pixels} pixels (validation.images.max_pixels), "
        "refused before decoding (decompression-bomb guard)",
        high=bounds.max_pixels,
    )
    status("decodes", "image does not decode")
    status("rgb", "image mode does not convert to RGB")
    return checks


def _leakage_checks(config: DomainConfig, present: set[str]) -> list[Check]:
    """Splits that share images, near-copies of images, or groups (see `leakage`): on the
    facts `leakage.leakage_facts` adds beside the table."""
    gxe, _ = _gx()
    layout, checks = config.data, []
    if layout.split_column not in present:
        return checks

    def status(name, fact, column, problem, severity="error"):
        exp = gxe.ExpectColumnValuesToBeInSet(column=fact_column(fact), value_set=["ok"])
        checks.append(_check(name, column, problem, exp, "reason", fact_column(fact), severity))

    image = layout.image_column
    if image in present:
        problem = "with the same image content in another split (splits must not overlap)"
        status("image_leak", LEAK, image, problem)
        distance = config.validation.near_duplicate_distance
        if distance is not None:
            problem = (
                f"look like an image of another split (perceptual hashes at most {distance} "
                "bits apart; validation.near_duplicate_distance)"
            )
            status("image_near_duplicate", NEAR_DUPLICATE, image, problem, "warning")
    group = layout.group_column
    if group is not None and group in present:
        problem = f"share their {group} with rows of another split (data.group_column)"
        status("group_split", GROUP, group, problem)
    return checks


def load_extra_expectations(path: Path, present: Sequence[str] = ()) -> list[Check]:
    """Checks from a YAML list like
    `- {type: expect_column_values_to_match_regex, kwargs: {column: image, regex: '\\.png$'}}`.
    """
    import_gx()
    from great_expectations.expectations.registry import (
        get_expectation_impl,
        list_registered_expectation_implementations,
    )

    try:
        entries = safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExtraExpectationsError(
            f"{path}: file not found (named by validation.extra_expectations in domain.yaml)"
        ) from None
    except yaml.YAMLError as exc:
        raise ExtraExpectationsError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    except UnicodeDecodeError as exc:
        raise ExtraExpectationsError(f"{path}: not UTF-8 text: {exc}") from None
    if not isinstance(entries, list):
        raise ExtraExpectationsError(
            f"{path}: expected a list of {{type: ..., kwargs: {{...}}}} entries, "
            f"got {type(entries).__name__}"
        )
    known = list_registered_expectation_implementations()
    checks = []
    for number, entry in enumerate(entries, 1):
        where = f"{path}: entry {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise ExtraExpectationsError(
                f"{where}: needs a 'type' (an expectation name), got {entry!r}"
            )
        unknown = set(entry) - {"type", "kwargs", "meta"}
        if unknown:
            raise ExtraExpectationsError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: type, kwargs, meta"
            )
        kind = _snake(entry["type"])
        if kind not in known:
            close = difflib.get_close_matches(kind, known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ExtraExpectationsError(
                f"{where}: unknown expectation type {entry['type']!r}; {hint}"
                f"allowed: {', '.join(known)}"
            )
        kwargs = entry.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise ExtraExpectationsError(f"{where}: kwargs must be a mapping, got {kwargs!r}")
        try:
            exp = get_expectation_impl(kind)(**kwargs, meta=dict(entry.get("meta") or {}))
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            message = " ".join(str(exc).split())
            raise ExtraExpectationsError(f"{where} ({kind}): invalid kwargs: {message}") from None
        exp.meta = {"check": f"extra:{kind}", **(exp.meta or {})}
        checks.append(_extra_check(kind, kwargs, exp, path, present))
    return checks


def _extra_check(kind: str, kwargs: dict, exp: Any, path: Path, present: Sequence[str]) -> Check:
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

    column = kwargs.get("column")
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k != "column")
    problem = f"fail {kind}({args}) from {path.name}"
    if isinstance(exp, ColumnMapExpectation) and column in present:
        show, value_column = "value", column  # offending rows with their value
    elif isinstance(
        exp, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation
    ):
        show, value_column = "rows", None
    else:
        show, value_column = "table", None  # aggregate: GX's observed value
    return Check(f"extra:{kind}", column, problem, exp, show, value_column)


def _snake(name: str) -> str:
    """'ExpectColumnValuesToMatchRegex' or 'expect_column_values_to_match_regex' -> snake case."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.strip()).lower()

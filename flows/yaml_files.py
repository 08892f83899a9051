"""The YAML files people write (domain.yaml, extra expectations; DVC files) are read here:
`yaml.safe_load` only (no tag ever builds an object), with its failures, nesting too deep
included, turned into messages that say what to change."""

from __future__ import annotations

import re
from typing import Any

import yaml

_TAG = re.compile(r"constructor for the tag '([^']+)'")
_STANDARD = "tag:yaml.org,2002:"


class TooDeep(yaml.YAMLError):
    """The text nests deeper than the parser can follow (it recurses per level)."""


def safe_load(text: str) -> Any:
    """`yaml.safe_load(text)`; nesting too deep for the parser is a YAMLError too."""
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise TooDeep(
            "it nests deeper than the parser can follow; these files need a few levels"
        ) from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong, where, and the fix. A tag (`!!python/object/apply:...`, `!include`,
    any `!name`) gets its own message: safe loading builds no objects, so a tag can never
    work, and the parser's "could not determine a constructor" does not say so."""
    problem = getattr(exc, "problem", None) or ""
    found = _TAG.search(problem) if isinstance(exc, yaml.constructor.ConstructorError) else None
    if found is None:
        return str(exc)
    tag = found.group(1)
    shown = "!!" + tag.removeprefix(_STANDARD) if tag.startswith(_STANDARD) else tag
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return (
        f"{where}the tag {shown} is not allowed: these files hold plain YAML data (mappings, "
        "lists, strings, numbers, true/false), never objects a tag would construct. Fix: "
        "remove the tag and write the value itself"
    )

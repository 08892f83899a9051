"""JSON from a client, parsed with limits before anything validates it.

The size is bounded before this (the request body by MPT_SERVE_MAX_REQUEST_MB, a form
field by the form parser); here the nesting depth and what `json.loads` itself cannot
take: a body nested deeper than the interpreter's recursion limit (`RecursionError`), an
integer of more than 4,300 digits (`ValueError`), bytes that are not UTF-8. Each becomes
`JsonRefused` with the problem in words, never an exception a handler does not expect.
"""

from __future__ import annotations

import json
from typing import Any


class JsonRefused(ValueError):
    """The text is not JSON this server takes; the message says why (no fix: the caller
    knows which field it was and adds that)."""


def loads_limited(data: bytes | str, max_depth: int) -> Any:
    """`json.loads(data)`, refused when it is not JSON or nests deeper than `max_depth`
    (a scalar is depth 0, `{"items": []}` depth 2)."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise JsonRefused(f"it nests deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise JsonRefused(f"it is not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise JsonRefused(f"it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # e.g. an integer over the interpreter's digit limit
        raise JsonRefused(f"it holds a value JSON cannot carry here ({_first(exc)})") from None
    if _deeper_than(value, max_depth):
        raise JsonRefused(f"it nests deeper than {max_depth} levels")
    return value


def _first(exc: Exception) -> str:
    """The first clause of an error (Python's digit-limit error goes on about set_int_max_
    str_digits, which is the server's business, not the client's)."""
    return str(exc).split(";")[0].strip()


def _deeper_than(value: Any, max_depth: int) -> bool:
    """Whether any list or object lies more than `max_depth` levels deep (iterative: a
    deep value must not recurse here either)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False

"""Great Expectations, imported on first use: the suite builds its checks from it and the
runner runs them, so neither imports the other to get it."""

from __future__ import annotations

import warnings
from typing import Any


def import_gx() -> Any:
    """great_expectations, imported on first use (it takes seconds), without the deprecation
    warnings its own imports raise (sre_constants, sre_parse)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import great_expectations
        import great_expectations.expectations  # registers the expectation classes

    return great_expectations

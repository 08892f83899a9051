"""Great Expectations validation of a domain's data: the metadata table and its images.

    from flows.validation import validate_domain

    report = validate_domain(domain, report_dir=Path("reports/retail"))
    report.passed, print(report.summary), report.docs_path

Only this package imports great_expectations, and only when a domain is validated.
"""

from .report import CheckFailure, ValidationReport
from .suite import Check, ExtraExpectationsError, build_checks, load_extra_expectations
from .table import TableError, read_table
from .validate import ValidatedData, validate_data, validate_domain

__all__ = [
    "Check",
    "CheckFailure",
    "ExtraExpectationsError",
    "TableError",
    "ValidatedData",
    "ValidationReport",
    "build_checks",
    "load_extra_expectations",
    "read_table",
    "validate_data",
    "validate_domain",
]

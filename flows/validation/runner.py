"""Running the checks with Great Expectations: a fresh in-memory (ephemeral) context per call,
no progress bars, no analytics, nothing written anywhere unless Data Docs are asked for, and
then only into the directory given.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .gx import import_gx

if TYPE_CHECKING:
    from .suite import Check

RESULT_FORMAT = {
    # SUMMARY keeps the first offending rows (by the `row` index) and the full count; COMPLETE
    # would also store every offending value, which makes huge results and docs on dirty data.
    "result_format": "SUMMARY",
    "partial_unexpected_count": 20,
}
DOCS_SITE = "local_site"


def run_checks(
    frame: pd.DataFrame, checks: Sequence[Check], *, name: str, docs_dir: Path | None = None
) -> tuple[list[Any], Path | None]:
    """The GX result of each check, in the order of `checks`, and the Data Docs index.html
    built into `docs_dir` (None without one)."""
    gx = import_gx()
    context = _context(gx, docs_dir)
    source = context.data_sources.add_pandas(name=name)
    batches = source.add_dataframe_asset(name="metadata").add_batch_definition_whole_dataframe(
        name="whole table"
    )
    suite = gx.ExpectationSuite(name=f"{name} metadata")
    for check in checks:
        suite.add_expectation(check.expectation)
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name} validation", data=batches, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": frame}, result_format=RESULT_FORMAT)
    by_order = {r.expectation_config.meta["order"]: r for r in result.results}
    ordered = [by_order[i] for i in range(len(checks))]
    if docs_dir is None:
        return ordered, None
    context.build_data_docs(site_names=[DOCS_SITE])
    return ordered, docs_dir / "index.html"


def _context(gx: Any, docs_dir: Path | None) -> Any:
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # Stores in memory; the only docs site (if any) is ours: GX's default ephemeral context
    # would also reserve a temp directory for a docs site of its own.
    sites = {}
    if docs_dir is not None:
        sites[DOCS_SITE] = {
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
        }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites=sites,
        # GX 1.24 ships no analytics emitter; this keeps older 1.x releases quiet too. The
        # GX_ANALYTICS_ENABLED variable is not set: it would leak into the caller's environment.
        analytics_enabled=False,
        # Without this every validation draws tqdm bars on stderr.
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)

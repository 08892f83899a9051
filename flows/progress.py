"""Progress of a retrain run, per domain and stage, for whoever watches it.

The flow reports through `current()`; the `mpt run` command installs a live table
(`LiveTable`) for the duration of the run, scripts get nothing on screen (`--json`), and a
scheduled run logs. Stages: planning, validating, versioning, tuning (epoch k/n),
registering, then the final status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

log = logging.getLogger("mpt.run")


class Reporter(Protocol):
    def stage(self, domain: str, stage: str, detail: str = "") -> None: ...

    def epoch(self, row: dict[str, Any]) -> None: ...


class LogReporter:
    """Stages as log lines (the default, e.g. for scheduled runs)."""

    def stage(self, domain: str, stage: str, detail: str = "") -> None:
        log.info("%s: %s %s", domain, stage, detail)

    def epoch(self, row: dict[str, Any]) -> None:
        log.info("%s: %s %s", row.get("domain"), row_stage(row), epoch_detail(row))


_current: Reporter = LogReporter()
_lock = threading.Lock()


def current() -> Reporter:
    return _current


@contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    global _current
    with _lock:
        previous, _current = _current, reporter
    try:
        yield reporter
    finally:
        with _lock:
            _current = previous


def epoch_detail(row: dict[str, Any]) -> str:
    """What a worker's progress row says: the embedding pass (images done/total, rate) or a
    tuning epoch (k/n and the validation metric)."""
    if row.get("stage") == "embedding":
        return f"{row.get('done')}/{row.get('total')} images, {row.get('rate', 0):.0f} images/s"
    metric = next((k for k in row if k.startswith("val_")), None)
    shown = f", {metric} {row[metric]:.3f}" if metric and row.get(metric) is not None else ""
    return f"epoch {row.get('epoch')}/{row.get('epochs')}{shown}"


def row_stage(row: dict[str, Any]) -> str:
    return "embedding" if row.get("stage") == "embedding" else "tuning"


class LiveTable:
    """A rich live table on stderr: one line per domain with its stage and detail."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._rows: dict[str, tuple[str, str, float]] = {}
        self._started = time.monotonic()
        # Live re-renders `self` (its __rich__) at every refresh: the clock keeps running
        # while a stage is long.
        self._live = Live(self, console=Console(stderr=True), refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveTable:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.refresh()
        self._live.__exit__(*exc)

    def __rich__(self):
        return self._render()

    def stage(self, domain: str, stage: str, detail: str = "") -> None:
        self._rows[domain] = (stage, detail, time.monotonic())
        self._live.refresh()

    def epoch(self, row: dict[str, Any]) -> None:
        self.stage(str(row.get("domain")), row_stage(row), epoch_detail(row))

    def _render(self):
        from rich.table import Table

        table = Table(title=f"mpt run ({time.monotonic() - self._started:.0f}s)", expand=False)
        for column in ("domain", "stage", "detail"):
            table.add_column(column)
        for domain, (stage, detail, _) in sorted(self._rows.items()):
            table.add_row(domain, stage, detail)
        return table

"""Drift of production: how far the predictions a domain's production version makes on
live traffic have moved from what it predicted on its test split when it was evaluated.

The statistic is the population stability index (PSI) of two distributions, each over a
sliding window of the domain's last `monitoring.window` production predictions against
the version's stored test-split predictions (the registry's `predictions`, written when
it was evaluated):

- the predicted values: the reference's most frequent values (up to MAX_VALUE_BINS) and
  one bin for every other value, so closed tasks get one bin per class or answer and
  open-ended ones (captions) their frequent answers plus the rest;
- the confidence of each prediction (its probability among its candidates) in ten equal
  bins, for tasks that score candidates (generated text has no confidence).

PSI = sum over bins of (p - q) * ln(p / q), each share smoothed by half a count per bin.
Why PSI: production has no labels, so only the model's outputs can be compared; PSI
compares categorical predictions and binned scores alike, is symmetric, adds up over
bins (each bin's term says where the shift is), costs a few counts, and has a common
reading (below 0.1 little change, 0.1-0.25 a moderate shift, above 0.25 a large one).
A domain's drift is the larger of its components. With a small window or a small test
split PSI is biased upwards by about (bins - 1) * (1/window + 1/reference rows), so a
reading is reported only once the window holds `min_samples` predictions, and the
numbers of both sides are reported with it.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from registry.tallies import CONFIDENCE_BINS, OTHER_VALUE, confidence_bin

STATISTIC = "psi"
MAX_VALUE_BINS = 20
"""Predicted values with a bin of their own: the reference's most frequent ones."""
SMOOTHING = 0.5
"""Pseudo-count per bin: an empty bin on one side gives a large but finite term."""


def psi(expected: Sequence[int], actual: Sequence[int]) -> float:
    """The population stability index of two histograms over the same bins."""
    if len(expected) != len(actual):
        raise ValueError(f"histograms of {len(expected)} and {len(actual)} bins differ")
    n_e, n_a, bins = sum(expected), sum(actual), len(expected)
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        p = (a + SMOOTHING) / (n_a + SMOOTHING * bins)
        q = (e + SMOOTHING) / (n_e + SMOOTHING * bins)
        total += (p - q) * math.log(p / q)
    return total


@dataclass(frozen=True)
class Reference:
    """A production version's predictions on its test split, binned."""

    version: int
    source: str
    """Where it comes from, for a reader: "v3 on test of data version 1a2b3c4d5e6f"."""
    values: tuple[str, ...]
    """The values with a bin of their own; every other value counts in one more bin."""
    value_counts: tuple[int, ...]
    confidence_counts: tuple[int, ...] | None
    """None: the stored rows carry no score (generated text)."""
    rows: int

    @classmethod
    def from_rows(cls, version: int, rows: Sequence[dict[str, Any]], source: str) -> Reference:
        if not rows:
            raise ValueError(f"{source}: no stored prediction to compare with")
        frequent = Counter(str(r["prediction"]) for r in rows).most_common(MAX_VALUE_BINS)
        values = tuple(value for value, _ in frequent)
        ref = cls(version, source, values, (), None, len(rows))
        value_counts = ref.value_histogram(str(r["prediction"]) for r in rows)
        scores = [r.get("score") for r in rows]
        confidence = None
        if all(isinstance(x, int | float) for x in scores):
            confidence = confidence_histogram(scores)
        return cls(version, source, values, value_counts, confidence, len(rows))

    def value_histogram(self, values) -> tuple[int, ...]:
        index = {v: i for i, v in enumerate(self.values)}
        counts = [0] * (len(self.values) + 1)
        for value in values:
            counts[index.get(value, len(self.values))] += 1
        return tuple(counts)

    @property
    def bin_names(self) -> tuple[str, ...]:
        return (*self.values, OTHER_VALUE)


def confidence_histogram(confidences) -> tuple[int, ...]:
    counts = [0] * CONFIDENCE_BINS
    for c in confidences:
        counts[confidence_bin(c)] += 1
    return tuple(counts)


@dataclass(frozen=True)
class Reading:
    """One measurement of a domain's drift."""

    version: int
    drift: float
    components: dict[str, float]
    samples: int
    reference_rows: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "statistic": STATISTIC,
            "drift": round(self.drift, 6),
            "components": {k: round(v, 6) for k, v in self.components.items()},
            "samples": self.samples,
            "reference_rows": self.reference_rows,
            "reference": self.source,
        }


@dataclass
class Window:
    """The last `size` production predictions of one version of a domain: appended by the
    batcher thread, copied by the monitor thread (hence the lock)."""

    version: int
    size: int
    items: deque = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.items = deque(maxlen=self.size)

    def add(self, value: str | None, confidence: float | None) -> None:
        with self.lock:
            self.items.append((value, confidence))

    def copy(self) -> list[tuple[str | None, float | None]]:
        with self.lock:
            return list(self.items)

    def resized(self, size: int) -> Window:
        """A window of `size` holding this one's newest predictions."""
        out = Window(self.version, size)
        out.items.extend(self.copy())
        return out


def measure(reference: Reference, window: Sequence[tuple[str | None, float | None]]) -> Reading:
    """The drift of `window`'s predictions against the reference."""
    components = {
        "predictions": psi(
            reference.value_counts, reference.value_histogram(str(v) for v, _ in window)
        )
    }
    confidences = [c for _, c in window if c is not None]
    if reference.confidence_counts is not None and confidences:
        components["confidence"] = psi(
            reference.confidence_counts, confidence_histogram(confidences)
        )
    return Reading(
        reference.version,
        max(components.values()),
        components,
        len(window),
        reference.rows,
        reference.source,
    )


class DriftTracker:
    """Every domain's window of production predictions, and their references."""

    def __init__(self, min_samples: int) -> None:
        self.min_samples = min_samples
        self.windows: dict[str, Window] = {}
        self.references: dict[tuple[str, int], Reference] = {}
        self.problems: dict[tuple[str, int], str] = {}
        """(domain, version) -> why it has no reference (nothing stored, registry down)."""
        self.sizes: dict[str, int] = {}
        """domain -> its window size (`monitoring.window`), set by the monitor."""
        self.default_size = 1000

    def add(self, domain: str, version: int, value: str | None, confidence: float | None) -> None:
        """One production prediction (called by the batcher thread for every item)."""
        window = self.windows.get(domain)
        size = self.sizes.get(domain, self.default_size)
        if window is None or window.version != version:
            window = Window(version, size)  # a new version is measured from scratch
            self.windows[domain] = window
        elif window.size != size:
            window = window.resized(size)  # new settings keep the newest predictions
            self.windows[domain] = window
        window.add(value, confidence)

    def reading(self, domain: str) -> Reading | None:
        """The domain's drift now, or None (no reference, or too few predictions yet)."""
        window = self.windows.get(domain)
        if window is None:
            return None
        reference = self.references.get((domain, window.version))
        items = window.copy()
        if reference is None or len(items) < min(self.min_samples, window.size):
            return None
        return measure(reference, items)

    def status(self, domain: str, version: int | None) -> dict[str, Any]:
        """What /v1/domains says about the domain's drift."""
        window = self.windows.get(domain)
        samples = len(window.items) if window is not None and window.version == version else 0
        out: dict[str, Any] = {
            "statistic": STATISTIC,
            "window": self.sizes.get(domain, self.default_size),
            "samples": samples,
        }
        if version is None:
            return {**out, "state": "no version"}
        problem = self.problems.get((domain, version))
        reading = self.reading(domain) if samples else None
        if reading is not None:
            return {**out, "state": "measured", **reading.to_dict()}
        if problem:
            return {**out, "state": "no reference", "problem": problem}
        wanted = min(self.min_samples, out["window"])
        return {**out, "state": "collecting", "needs": wanted}

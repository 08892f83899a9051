"""The bounded forms live evidence takes: fixed confidence bins, fixed latency buckets and
capped counts of predicted values. Servers count into them, the registry adds them up,
and a row never grows with the traffic. No imports: serving and review use them too."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

CONFIDENCE_BINS = 10
"""Confidences (a prediction's probability among its candidates, in [0, 1]) are counted
in this many equal bins: bin i holds [i/10, (i+1)/10), the last one includes 1."""
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
"""Upper bounds of the shadow latency histogram, in ms; one more bucket counts the rest."""
MAX_VALUES = 50
"""Distinct predicted values a tally keeps per version; the rarest are folded into
OTHER_VALUE, so free text (captions) cannot grow a row without bound."""
OTHER_VALUE = "(other)"


def confidence_bin(confidence: float) -> int:
    """The bin of a confidence in [0, 1] (out-of-range values are clipped)."""
    return min(CONFIDENCE_BINS - 1, max(0, int(confidence * CONFIDENCE_BINS)))


def latency_bucket(ms: float) -> int:
    """The bucket of a latency in ms (the last one holds everything above 5 s)."""
    return next(
        (i for i, top in enumerate(LATENCY_BUCKETS_MS) if ms <= top), len(LATENCY_BUCKETS_MS)
    )


def merge_counts(
    a: Mapping[str, int], b: Mapping[str, int], cap: int = MAX_VALUES
) -> dict[str, int]:
    """a + b, keeping the `cap` - 1 most frequent values and folding the others into
    OTHER_VALUE once there are more than `cap`."""
    total = Counter(a)
    total.update(b)
    if len(total) <= cap:
        return dict(total)
    other = total.pop(OTHER_VALUE, 0)
    keep = total.most_common(cap - 1)
    other += sum(total.values()) - sum(n for _, n in keep)
    return {**dict(keep), OTHER_VALUE: other}


def add_bins(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    if len(a) != len(b):
        raise ValueError(f"histograms of {len(a)} and {len(b)} bins cannot be added")
    return tuple(x + y for x, y in zip(a, b, strict=True))


def quantile_ms(histogram: Sequence[int], q: float) -> float | None:
    """The upper bound of the latency bucket holding quantile `q` (None: no count; inf:
    the overflow bucket)."""
    n = sum(histogram)
    if not n:
        return None
    seen = 0
    for i, count in enumerate(histogram):
        seen += count
        if seen >= q * n:
            return float(LATENCY_BUCKETS_MS[i]) if i < len(LATENCY_BUCKETS_MS) else float("inf")
    return float("inf")

"""Which split each imported row goes to: kept from the source where it has them, else made
by one rule, the same for a first import and for every append.

The unit that goes to a split is never a row: rows sharing image bytes, or a value of the
`--group-by` key (a patient, a source image), are joined into one unit, so no image and
no group straddles two splits. Units already in the domain keep their split, and new rows
joined to them follow it.

The rule, per stratum (the task's declared value of the unit's first row: a label, a
(question, answer) pair; one stratum for open tasks): units are taken in a seeded order and
each goes to the split whose share is furthest below its fraction (ties broken by a seeded
order of the splits, so no split gets every odd unit), after every split of positive
fraction has one unit, counting the units the domain already has. So a stratum
of four units gets train 2, val 1, test 1 at 0.8 / 0.1 / 0.1, forty get 32 / 4 / 4, and an
append tops up each split towards its fraction without moving any row.

A source with some splits only (train and test, say) keeps them and carves the missing ones
out of its train rows by the same rule, with the fractions of train and the missing splits.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mpt_core.data import SPLITS

from .source import ImportFailed


@dataclass(frozen=True)
class SplitRule:
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """train, val, test: shares of the units the source gives no split."""
    seed: int = 0

    def __post_init__(self) -> None:
        f = self.fractions
        if len(f) != len(SPLITS) or min(f) < 0 or abs(sum(f) - 1) > 1e-6 or f[0] <= 0:
            raise ImportFailed(
                f"split fractions {list(f)}: give train,val,test fractions that are not "
                "negative and add up to 1, with train above 0 (e.g. 0.8,0.1,0.1)"
            )

    def to_dict(self) -> dict:
        return {"fractions": list(self.fractions), "seed": self.seed}


@dataclass(frozen=True)
class Placed:
    """A row as splitting sees it."""

    content: str
    """sha256 of the image bytes."""
    group: str | None
    stratum: str | None
    split: str | None
    """New rows: the source's split (None: none); rows in the domain: theirs."""


def assign_splits(new: Sequence[Placed], existing: Sequence[Placed], rule: SplitRule) -> list[str]:
    """The split of each of `new` (see the module); `existing` rows never change."""
    everything = [*existing, *new]
    units = _units(everything)
    given = {p.split for p in new if p.split is not None}
    carve = tuple(s for s in SPLITS if s not in given) if given and "train" in given else ()
    counts: dict[tuple, Counter] = defaultdict(Counter)
    free: dict[tuple, list[list[int]]] = defaultdict(list)
    out: dict[int, str] = {}
    for members in units:
        old = sorted({everything[i].split for i in members if i < len(existing)}, key=SPLITS.index)
        fresh = [i - len(existing) for i in members if i >= len(existing)]
        stratum = everything[members[0]].stratum
        if old:
            for i in fresh:
                out[i] = old[0]
            if len(old) == 1:
                counts[stratum][old[0]] += 1
            continue
        source = sorted({new[i].split for i in fresh if new[i].split}, key=SPLITS.index)
        if source and not (carve and source == ["train"]):
            for i in fresh:
                out[i] = new[i].split or source[0]
            continue
        allowed = ("train", *carve) if source else SPLITS
        free[allowed, stratum].append(fresh)
    for (allowed, stratum), members in free.items():
        for unit, split in zip(
            members, _deal(members, allowed, stratum, counts, rule), strict=True
        ):
            for i in unit:
                out[i] = split
    return [out[i] for i in range(len(new))]


def _deal(
    units: list[list[int]],
    allowed: tuple[str, ...],
    stratum: str | None,
    counts: dict,
    rule: SplitRule,
) -> list[str]:
    """The split of each unit of one stratum, in the order given (see the module)."""
    share = {s: rule.fractions[SPLITS.index(s)] for s in allowed}
    total = sum(share.values())
    share = {s: f / total for s, f in share.items() if f > 0}
    count = Counter({s: counts[stratum][s] for s in share})
    rng = np.random.default_rng([rule.seed, zlib.crc32(str(stratum).encode())])
    order = rng.permutation(len(units))
    tie = dict(zip(share, rng.permutation(len(share)).tolist(), strict=True))  # no split favoured
    dealt: dict[int, str] = {}
    for index in order:
        empty = [s for s in share if count[s] == 0]
        if empty:
            split = max(empty, key=lambda s: (share[s], tie[s]))
        else:
            size = sum(count.values()) + 1
            split = max(share, key=lambda s: (round(share[s] * size - count[s], 9), tie[s]))
        count[split] += 1
        dealt[int(index)] = split
    counts[stratum].update(count - Counter({s: counts[stratum][s] for s in share}))
    return [dealt[i] for i in range(len(units))]


def _units(rows: Sequence[Placed]) -> list[list[int]]:
    """Rows joined by equal content or equal group, each unit's rows in row order, units
    in the order of their first row."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows):
        for key in (("content", row.content), ("group", row.group)):
            if key[1] is None:
                continue
            j = first.setdefault(key, i)
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    units: dict[int, list[int]] = defaultdict(list)
    for i in range(len(rows)):
        units[find(i)].append(i)
    return list(units.values())

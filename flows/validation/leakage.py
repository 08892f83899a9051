"""Leakage between splits: facts that compare rows, computed once per table in numpy/pandas.

A model scored on test images it was trained on (or on their near-copies, or on other images
of the same patient) looks better than it is, and every metric a reviewer sees inflates.
Three facts, each "ok" or the reason naming the other row, None where unknown:

- `leak`: the same image bytes (sha256) in another split (an error);
- `near_duplicate`: an image of another split whose perceptual hash (64-bit pHash) differs
  in at most `validation.near_duplicate_distance` bits, with different bytes (a warning);
- `group`: the row's group (`data.group_column`: a patient, a source image) also has rows
  in another split (an error).

Near-duplicates are found by multi-index hashing, never by comparing every pair: the 64
bits are cut into `distance + 1` pieces, and two hashes within `distance` bits agree
exactly on at least one piece (pigeonhole), so only hashes sharing a piece's value (a
bucket) are compared, with numpy. The cost grows with the number of images and of
look-alike candidates, not with the square of the images (`bench/import_bench.py`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from .images import OK, fact_column

LEAK = "leak"
NEAR_DUPLICATE = "near_duplicate"
GROUP = "group"
HASH_BITS = 64


def leakage_facts(
    table: pd.DataFrame,
    facts: pd.DataFrame | None,
    *,
    image: str,
    split: str,
    group: str | None,
    max_distance: int | None,
) -> pd.DataFrame:
    """The leakage facts of a table (same index), in columns named `fact_column(fact)`:
    `leak` and `near_duplicate` (when `max_distance` is not None) from the image facts
    `facts` (None: the table has no image column), `group` when `group` is a column."""
    out: dict[str, pd.Series] = {}
    if split not in table:
        return pd.DataFrame(index=table.index)
    splits = table[split]
    paths = table[image] if image in table else pd.Series("-", index=table.index)
    if facts is not None:
        sha256 = facts[fact_column("sha256")]
        out[LEAK] = content_leaks(sha256, splits, paths)
        if max_distance is not None:
            phash = facts[fact_column("phash")]
            out[NEAR_DUPLICATE] = near_duplicates(phash, sha256, splits, paths, max_distance)
    if group is not None and group in table:
        out[GROUP] = group_straddles(table[group], splits, paths, group)
    return pd.DataFrame(out, index=table.index).rename(columns=fact_column)


def content_leaks(sha256: pd.Series, splits: pd.Series, paths: pd.Series) -> pd.Series:
    """ "ok", or the first row of another split with identical bytes; None where unknown."""
    leaks = pd.Series(None, index=sha256.index, dtype=object)
    known = sha256.notna() & splits.notna()
    leaks[known] = OK
    frame = pd.DataFrame({"sha": sha256[known], "split": splits[known]})
    mixed = frame[frame.groupby("sha")["split"].transform("nunique") > 1]
    for _, group in mixed.groupby("sha", sort=False):
        _name_other_split(leaks, group.index, splits, paths, "same image content as")
    return leaks


def group_straddles(
    groups: pd.Series, splits: pd.Series, paths: pd.Series, column: str
) -> pd.Series:
    """ "ok", or the first row of another split in the same group; None where the row has
    no group or no split."""
    out = pd.Series(None, index=groups.index, dtype=object)
    known = groups.notna() & splits.notna()
    out[known] = OK
    frame = pd.DataFrame({"group": groups[known], "split": splits[known]})
    mixed = frame[frame.groupby("group")["split"].transform("nunique") > 1]
    for value, group in mixed.groupby("group", sort=False):
        _name_other_split(out, group.index, splits, paths, f"{column} {value!r} is also in")
    return out


def _name_other_split(
    out: pd.Series, rows: pd.Index, splits: pd.Series, paths: pd.Series, what: str
) -> None:
    for row in rows:
        other = next(r for r in rows if splits[r] != splits[row])
        out[row] = f"{what} row {other} ({paths[other]}, {splits[other]})"


def near_duplicates(
    phash: pd.Series,
    sha256: pd.Series,
    splits: pd.Series,
    paths: pd.Series,
    max_distance: int,
) -> pd.Series:
    """ "ok", or the closest row of another split (fewest differing bits, then the first
    row) whose perceptual hash is within `max_distance` bits and whose bytes differ
    (identical bytes are `content_leaks`); None where unknown."""
    out = pd.Series(None, index=phash.index, dtype=object)
    known = phash.notna() & splits.notna() & sha256.notna()
    out[known] = OK
    rows = np.asarray(phash.index[known])
    if len(rows) < 2:
        return out
    hashes = hex_hashes(phash[known])
    split_codes = pd.factorize(splits[known])[0]
    content = pd.factorize(sha256[known])[0]
    a, b, dist = close_pairs(hashes, max_distance)
    keep = (split_codes[a] != split_codes[b]) & (content[a] != content[b])
    a, b, dist = a[keep], b[keep], dist[keep]
    source, partner, dist = np.r_[a, b], np.r_[b, a], np.r_[dist, dist]
    order = np.lexsort((rows[partner], dist, source))
    source, partner, dist = source[order], partner[order], dist[order]
    first = np.r_[True, source[1:] != source[:-1]] if len(source) else np.zeros(0, bool)
    for i, j, d in zip(source[first], partner[first], dist[first], strict=True):
        other = rows[j]
        out[rows[i]] = (
            f"looks like row {other} ({paths[other]}, {splits[other]}): perceptual hashes "
            f"{d} of {HASH_BITS} bits apart"
        )
    return out


def hex_hashes(values: pd.Series) -> np.ndarray:
    """16-hex-digit hashes (as `str(imagehash.phash(...))` writes them) as uint64."""
    return np.array([int(v, 16) for v in values], dtype=np.uint64)


def close_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, ...]:
    """Every pair (i, j), i < j, of `hashes` (uint64) differing in at most `max_distance`
    bits, with that distance: three int arrays, by multi-index hashing (see the module)."""
    n = len(hashes)
    found: list[np.ndarray] = []
    shift = 0
    for width in _piece_widths(max_distance + 1):
        keys = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        shift += width
        for a, b in _bucket_pairs(keys):
            dist = np.bitwise_count(hashes[a] ^ hashes[b])
            close = dist <= max_distance
            found.append(np.minimum(a, b)[close].astype(np.int64) * n + np.maximum(a, b)[close])
    pairs = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    a, b = pairs // n, pairs % n
    return a, b, np.bitwise_count(hashes[a] ^ hashes[b]).astype(np.int64)


def _piece_widths(pieces: int) -> list[int]:
    """64 bits cut into `pieces` widths differing by at most one bit."""
    base, extra = divmod(HASH_BITS, pieces)
    return [base + (1 if i < extra else 0) for i in range(pieces)]


def _bucket_pairs(keys: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Index pairs (i, j) of equal keys, i before j in key order, one batch per offset: the
    k-th batch pairs each index with the one k places after it in its bucket. Work and
    memory per batch are those of the pairs themselves; buckets of one cost nothing."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    later = np.repeat(sizes, sizes) - (np.arange(len(keys)) - np.repeat(starts, sizes)) - 1
    active = np.flatnonzero(later > 0)
    offset = 1
    while len(active):
        yield order[active], order[active + offset]
        offset += 1
        active = active[later[active] >= offset]

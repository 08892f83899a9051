"""Reading a domain's metadata CSV into a DataFrame, or saying exactly why it cannot be read.

A table that cannot be read at all (missing, empty, not UTF-8, not comma-separated, not CSV)
raises `TableError` with the file, the problem and the fix. Everything else (empty cells,
unknown labels, bad paths) is left for the expectation suite, which reports rows.

Every cell is read as text. Empty cells and the usual spellings of a missing value ("NaN",
"null", "None", ...) become nulls, unless the spelling is a declared label/answer/question.
Rows are indexed 1, 2, ... in file order (index name `row`): row 1 is the first line below
the header.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from mpt_core.errors import DataError

ROW_INDEX = "row"
NULL_TOKENS = frozenset(
    {"", "nan", "NaN", "NAN", "null", "NULL", "None", "NA", "N/A", "n/a", "<NA>", "#N/A"}
)
_UTF8_FIX = "re-save it as UTF-8 (in a spreadsheet: 'CSV UTF-8 (comma delimited)')"
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


class TableError(DataError):
    """The metadata table cannot be read; the message names the file, the problem and the fix."""


def read_table(path: Path, keep: Iterable[str] = ()) -> pd.DataFrame:
    """The metadata table at `path` as text columns indexed by row number (1 = first data row);
    `df.attrs["md5"]` is the md5 of the bytes read.

    keep: values that stay values even if they look like a missing value (declared labels).
    """
    raw = _read_bytes(path)
    text = _decode(path, raw)
    if not text.strip():
        raise TableError(
            f"{path}: the file is empty; it needs a header line with the column names "
            "(e.g. image,split,label) and one line per image"
        )
    _check_header(path, text)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, csv.Error) as exc:
        raise TableError(
            f"{path}: not a valid CSV table: {str(exc).strip()}; "
            "quote values that contain commas or line breaks"
        ) from None
    df.index = pd.RangeIndex(1, len(df) + 1, name=ROW_INDEX)
    df = _nulls_to_na(df, frozenset(keep))
    df.attrs["md5"] = hashlib.md5(raw, usedforsecurity=False).hexdigest()  # as DVC records it
    return df


def _read_bytes(path: Path) -> bytes:
    fix = "create it, or set data.metadata in domain.yaml to the table's file name (in data/)"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TableError(f"{path}: metadata file not found; {fix}") from None
    except IsADirectoryError:
        raise TableError(f"{path}: is a directory, not the metadata file; {fix}") from None
    except OSError as exc:
        raise TableError(f"{path}: cannot read the metadata file: {exc.strerror}") from None


def _decode(path: Path, raw: bytes) -> str:
    """UTF-8 (with or without a byte-order mark) or a TableError that says what it looks like."""
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if raw.startswith(bom):
            raise TableError(
                f"{path}: the file is encoded as {name} (it starts with a {name} byte-order "
                f"mark), not UTF-8; {_UTF8_FIX}"
            )
    if b"\x00" in raw[:4096]:
        raise TableError(
            f"{path}: the file contains NUL bytes, so it is probably UTF-16 or binary, "
            f"not UTF-8 text; {_UTF8_FIX}"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_no = raw.count(b"\n", 0, exc.start) + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line_end = raw.find(b"\n", exc.start)
        line = raw[line_start : line_end if line_end >= 0 else len(raw)].rstrip(b"\r")
        raise TableError(
            f"{path}: not valid UTF-8: byte 0x{raw[exc.start]:02x} at line {line_no}, "
            f"column {exc.start - line_start + 1} (read as Latin-1 / Windows-1252 that line "
            f"is {line.decode('cp1252', errors='replace')!r}); {_UTF8_FIX}"
        ) from None


def _check_header(path: Path, text: str) -> None:
    """A header that parses into one column holding ';' or a tab was written for another
    delimiter; say which, instead of reporting every required column as missing."""
    header = next(csv.reader(io.StringIO(text.lstrip("\r\n"))), [])
    if len(header) == 1:
        counts = {sep: header[0].count(sep) for sep in _OTHER_DELIMITERS}
        sep = max(counts, key=lambda s: counts[s])
        if counts[sep]:
            raise TableError(
                f"{path}: the header {header[0]!r} reads as one single column: the file looks "
                f"{_OTHER_DELIMITERS[sep]}-separated ({sep!r}), but the metadata table must be "
                "comma-separated; re-save it as CSV with ',' as the delimiter"
            )
    repeated = sorted(name for name, n in Counter(header).items() if n > 1)
    if repeated:
        raise TableError(
            f"{path}: column name(s) {repeated} appear more than once in the header; "
            "each column needs a distinct name"
        )


def _nulls_to_na(df: pd.DataFrame, keep: frozenset[str]) -> pd.DataFrame:
    for column in df.columns:
        values = df[column]
        missing = values.str.strip().isin(NULL_TOKENS) & ~values.isin(keep)
        if missing.any():
            df[column] = values.mask(missing)
    return df

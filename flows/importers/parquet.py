"""`parquet`: tables exported by Hugging Face `datasets` (`to_parquet`, the Hub's
`data/train-00000-of-00001.parquet`; `save_to_disk`'s Arrow files too), images embedded as
`{bytes, path}` structs (the `Image` feature) or as plain binary.

SOURCE is one file or a folder of `.parquet` / `.arrow` files. Each example field is read
from the column of its name unless `--column FIELD=COLUMN` names another; a `ClassLabel`
column (integers, with their names in the file's Hugging Face metadata) gives the names.
The images come from `--image-column`, else the one column holding image structs or
binary. A row's split comes from `--split-column` (or a column named `split`), else from
the file's path (`train-00000-of-00001.parquet`, `validation/`). An image struct whose
bytes are empty names its file by `path`, relative to the table's folder and inside SOURCE.
Every other scalar column is an attribute `--group-by` may name.
"""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Iterator
from typing import Any

from PIL import Image

from mpt_core.data import FIELDS, known_field

from .base import IMAGE_SUFFIXES, SPLIT_NAMES, FormatOptions, ImportFormat, Record, split_of
from .source import ImportFailed, Source, safe_join

SUFFIXES = (".parquet", ".arrow")
BATCH_ROWS = 1024


def read(source: Source, options: FormatOptions) -> Iterator[Record]:
    files = [rel for rel in source.files() if rel.lower().endswith(SUFFIXES)]
    if not files:
        raise ImportFailed(f"{source.text}: no .parquet or .arrow file found")
    for rel in files:
        yield from _records(source, rel, options)


def _records(source: Source, rel: str, options: FormatOptions) -> Iterator[Record]:
    import pyarrow as pa

    where = source.describe(rel)
    schema, batches = _open(source, rel)
    names = _class_names(schema)
    image = _image_column(schema, options.image_column, where)
    fields = _field_columns(schema, options.columns, image, where)
    split_column = options.split_column or ("split" if "split" in schema.names else None)
    if split_column is not None and split_column not in schema.names:
        raise ImportFailed(
            f"{where}: no column {split_column!r} (--split-column); columns: {schema.names}"
        )
    file_split = split_of(rel)
    stem = posixpath.splitext(rel)[0]
    number = 0
    for batch in batches:
        for row in batch.to_pylist():
            here = f"{where}: row {number}"
            values = {f: _text(row.get(c), names.get(c)) for f, c in fields.items()}
            split = file_split
            if split_column is not None:
                split = _split_value(row.get(split_column), split_column, here)
            data, path = _image_value(row.get(image), source, rel, here)
            suffix = posixpath.splitext(path or "")[1].lower()
            if suffix not in IMAGE_SUFFIXES:
                suffix = _sniff(data if data is not None else source.read(path), here)
            yield Record(
                image=path if data is None else f"{stem}/{number:06d}{suffix}",
                fields={f: v for f, v in values.items() if v is not None},
                where=here,
                split=split,
                attributes={
                    c: text
                    for c in schema.names
                    if c != image
                    and not pa.types.is_nested(schema.field(c).type)
                    and (text := _text(row.get(c), names.get(c))) is not None
                },
                data=data,
            )
            number += 1


def _split_value(value: Any, column: str, here: str) -> str | None:
    """A split column's cell as train / val / test; None when empty (the rule decides)."""
    if value is None or not str(value).strip():
        return None
    split = SPLIT_NAMES.get(str(value).strip().lower())
    if split is None:
        raise ImportFailed(
            f"{here}: {column} {value!r} is not a split; use train, val (validation) or test, "
            "or leave it empty for the import to choose"
        )
    return split


def _open(source: Source, rel: str):
    """(schema, batches) of a Parquet file or an Arrow IPC file or stream."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = source.describe(rel)
    handle = source.open(rel)
    try:
        if rel.lower().endswith(".parquet"):
            table = pq.ParquetFile(handle)
            return table.schema_arrow, table.iter_batches(batch_size=BATCH_ROWS)
        data = handle.read()
        try:
            reader = pa.ipc.open_stream(data)
            return reader.schema, iter(reader)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(data)
            return reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))
    except (pa.ArrowException, OSError) as exc:
        raise ImportFailed(f"{where}: not a readable Parquet / Arrow file: {exc}") from None


def _class_names(schema) -> dict[str, list[str]]:
    """ClassLabel names per column from the Hugging Face metadata, if the file has it."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    try:
        features = json.loads(raw).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}
    return {
        column: [str(n) for n in feature["names"]]
        for column, feature in features.items()
        if isinstance(feature, dict)
        and feature.get("_type") == "ClassLabel"
        and feature.get("names")
    }


def _is_image_type(arrow_type) -> bool:
    import pyarrow as pa

    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return True
    if pa.types.is_struct(arrow_type):
        names = {arrow_type.field(i).name for i in range(arrow_type.num_fields)}
        return {"bytes", "path"} <= names
    return False


def _image_column(schema, given: str | None, where: str) -> str:
    if given is not None:
        if given not in schema.names:
            raise ImportFailed(
                f"{where}: no column {given!r} (--image-column); columns: {schema.names}"
            )
        if not _is_image_type(schema.field(given).type):
            raise ImportFailed(
                f"{where}: column {given!r} holds {schema.field(given).type}, not images "
                "({bytes, path} structs or binary)"
            )
        return given
    found = [n for n in schema.names if _is_image_type(schema.field(n).type)]
    if len(found) != 1:
        raise ImportFailed(
            f"{where}: {'no column holds' if not found else f'columns {found} hold'} images "
            "({bytes, path} structs or binary); name the image column with --image-column"
        )
    return found[0]


def _field_columns(schema, given: dict[str, str], image: str, where: str) -> dict[str, str]:
    """Example field -> column: the `--column` mapping, else columns named like a field."""
    unknown = [c for c in given.values() if c not in schema.names]
    if unknown:
        raise ImportFailed(f"{where}: no column(s) {unknown} (--column); columns: {schema.names}")
    unknown = sorted(f for f in given if not known_field(f))
    if unknown:
        raise ImportFailed(
            f"--column {unknown[0]}=...: {unknown[0]!r} is not an example field; fields: "
            f"{', '.join(sorted(FIELDS))}"
        )
    mapped = dict(given)
    taken = {image, *given.values()}
    for name in schema.names:
        if known_field(name) and not FIELDS[name].many and name not in {*mapped, *taken}:
            mapped[name] = name
    return mapped


def _text(value: Any, names: list[str] | None) -> str | None:
    """A cell as text: a ClassLabel index as its name; None for a missing value."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if names is not None and isinstance(value, int) and not isinstance(value, bool):
        return names[value] if 0 <= value < len(names) else str(value)
    if isinstance(value, dict | list | bytes):
        return None
    return str(value).strip()


def _image_value(
    value: Any, source: Source, rel: str, here: str
) -> tuple[bytes | None, str | None]:
    """(embedded bytes, path): bytes when the cell holds them; else the file it names,
    relative to the table's folder."""
    if isinstance(value, bytes) and value:
        return value, None
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"], value.get("path") or None
        if value.get("path"):
            return None, safe_join(posixpath.dirname(rel), str(value["path"]), here)
    raise ImportFailed(f"{here}: the image cell is empty (no bytes, no path); drop the row")


def _sniff(data: bytes, here: str) -> str:
    """The file suffix of image bytes, from their header."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            kind = (img.format or "").lower()
    except Exception as exc:  # hostile bytes can make any PIL plugin raise anything
        raise ImportFailed(
            f"{here}: the image bytes are not an image PIL can read ({exc})"
        ) from None
    suffix = {"jpeg": ".jpg", "mpo": ".jpg", "tiff": ".tif"}.get(kind, f".{kind}")
    return suffix if suffix in IMAGE_SUFFIXES else ".img"  # PIL reads by content


FORMAT = ImportFormat(
    "parquet",
    "Hugging Face `datasets` exports (.parquet, .arrow), images as {bytes, path}",
    ("image_column", "split_column", "columns"),
    read,
)

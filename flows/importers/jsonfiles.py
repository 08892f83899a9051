"""Reading the JSON annotation files of COCO and VQA sources, with errors that name the file
and the record."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from typing import Any

from .source import ImportFailed, Source, safe_join


def load_json(source: Source, rel: str) -> dict[str, Any]:
    """The JSON object in file `rel` of SOURCE."""
    try:
        value = json.loads(source.read(rel))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportFailed(f"{source.describe(rel)}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ImportFailed(
            f"{source.describe(rel)}: expected a JSON object, got {type(value).__name__}"
        )
    return value


def entries(document: dict[str, Any], key: str, needs: Iterable[str], where: str) -> list[dict]:
    """`document[key]`, a list of objects each holding `needs`; ImportFailed naming the
    first entry that does not."""
    found = document.get(key)
    if not isinstance(found, list):
        raise ImportFailed(f"{where}: no {key!r} list; is this the right file?")
    needs = tuple(needs)
    for number, entry in enumerate(found):
        missing = [k for k in needs if not isinstance(entry, dict) or entry.get(k) is None]
        if missing:
            shown = json.dumps(entry)[:120] if not isinstance(entry, dict) else entry.get("id")
            raise ImportFailed(
                f"{where}: {key}[{number}] (id {shown}) has no {', '.join(missing)}; "
                f"every entry of {key!r} needs {', '.join(needs)}"
            )
    return found


def scalars(entry: dict[str, Any]) -> dict[str, str]:
    """The entry's text and number values as text (what `--group-by` may name)."""
    return {
        k: str(v) for k, v in entry.items() if isinstance(v, str | int | float | bool) and v != ""
    }


def json_files(source: Source, word: str) -> list[str]:
    """SOURCE's JSON files whose name holds `word` (e.g. `caption`)."""
    return [
        rel
        for rel in source.files()
        if rel.lower().endswith(".json") and word in posixpath.basename(rel).lower()
    ]


def image_base(
    source: Source, annotations: str, file_name: str, given: str | None, where: str
) -> str:
    """The folder of SOURCE that an annotation file's image names are relative to: `given`
    (`--images`), else the first of the usual places holding the first image: the folder
    named like the file's tail (`captions_train2017.json` -> `train2017/`) beside the
    annotation folder or in it, `images/`, the annotation's folder, SOURCE itself."""
    if given is not None:
        base = safe_join("", given, "--images")
        return "" if base == "." else base
    folder = posixpath.dirname(annotations)
    tail = posixpath.splitext(posixpath.basename(annotations))[0].rsplit("_", 1)[-1]
    places = [posixpath.join(posixpath.dirname(folder), tail), posixpath.join(folder, tail)]
    places += [tail, "images", folder, ""]
    for base in dict.fromkeys(posixpath.normpath(p) if p else "" for p in places):
        base = "" if base == "." else base
        if source.exists(safe_join(base, file_name, where)):
            return base
    raise ImportFailed(
        f"{where}: image file {file_name!r} is in none of "
        f"{[p or '.' for p in dict.fromkeys(places)]} of {source.text}; name the folder the "
        "image file names are relative to with --images DIR"
    )

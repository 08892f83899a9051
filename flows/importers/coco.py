"""`coco-captions`: COCO caption annotations and their images.

    SOURCE/annotations/captions_train2017.json   {"images": [{"id", "file_name", ...}],
    SOURCE/annotations/captions_val2017.json      "annotations": [{"image_id", "caption"}]}
    SOURCE/train2017/<file_name>, SOURCE/val2017/<file_name>

The annotation files are SOURCE's JSON files with `caption` in their name. Each file's
split comes from its name (`train`, `val`, `test`), or per image from an image's `split`
key (Karpathy's splits; `restval` is train). File names are relative to `--images DIR`,
else to the first usual place holding them (see `jsonfiles.image_base`). One record per
caption; an image's keys (`id`, `file_name`, any other such as `source` or `patient`) are
attributes `--group-by` may name (`image_id` too).
"""

from __future__ import annotations

from collections.abc import Iterator

from .base import SPLIT_NAMES, FormatOptions, ImportFormat, Record, split_of
from .jsonfiles import entries, image_base, json_files, load_json, scalars
from .source import ImportFailed, Source, safe_join


def read(source: Source, options: FormatOptions) -> Iterator[Record]:
    files = json_files(source, "caption")
    if not files:
        raise ImportFailed(
            f"{source.text}: no COCO caption annotations (a JSON file with 'caption' in its "
            "name, e.g. annotations/captions_train2017.json)"
        )
    for rel in files:
        yield from _records(source, rel, options)


def _records(source: Source, rel: str, options: FormatOptions) -> Iterator[Record]:
    where = source.describe(rel)
    document = load_json(source, rel)
    images = {
        entry["id"]: entry for entry in entries(document, "images", ("id", "file_name"), where)
    }
    annotations = entries(document, "annotations", ("image_id", "caption"), where)
    if not annotations:
        return
    first = images.get(annotations[0]["image_id"])
    base = None
    file_split = split_of(rel.rsplit("/", 1)[-1])
    for number, annotation in enumerate(annotations):
        here = f"{where}: annotations[{number}] (id {annotation.get('id')})"
        image = images.get(annotation["image_id"])
        if image is None:
            raise ImportFailed(
                f"{here}: image_id {annotation['image_id']!r} is not in the file's images; "
                "add the image entry or drop the caption"
            )
        if base is None:
            base = image_base(source, rel, str((first or image)["file_name"]), options.images, here)
        path = safe_join(base, str(image["file_name"]), f"{here}: image {image['id']!r}")
        caption = str(annotation["caption"]).strip()
        split = SPLIT_NAMES.get(str(image.get("split", "")).lower(), file_split)
        yield Record(
            image=path,
            fields={"caption": caption},
            where=f"{here}, image {image['id']!r} ({image['file_name']})",
            split=split,
            attributes={**scalars(image), "image_id": str(image["id"])},
        )


FORMAT = ImportFormat(
    "coco-captions",
    "COCO caption annotations (captions_*.json) and their image folders",
    ("images",),
    read,
)

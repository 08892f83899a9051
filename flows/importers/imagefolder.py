"""`imagefolder`: one folder per class (torchvision's `ImageFolder`, Hugging Face's
`imagefolder`), optionally under split folders:

    SOURCE/<class>/<image>                     no split: made by the split rule
    SOURCE/train/<class>/<image>, val/..., test/...   kept (val may be `validation`)

Deeper folders below a class (`SOURCE/boot/patient-7/a.png`) are kept as the record's
`folder` attribute, so `--group-by folder` keeps them in one split. Files that are not
images (by suffix) and hidden files are skipped.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from .base import IMAGE_SUFFIXES, SPLIT_NAMES, FormatOptions, ImportFormat, Record
from .source import ImportFailed, Source


def read(source: Source, options: FormatOptions) -> Iterator[Record]:
    images = [
        rel
        for rel in source.files()
        if posixpath.splitext(rel)[1].lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in rel.split("/"))
    ]
    if not images:
        raise ImportFailed(
            f"{source.text}: no image files found (suffixes {', '.join(sorted(IMAGE_SUFFIXES))}); "
            "an image folder holds one folder per class: SOURCE/<class>/<image>"
        )
    tops = {rel.split("/")[0] for rel in images}
    splits = sorted(top for top in tops if top.lower() in SPLIT_NAMES)
    by_split = len(splits) == len(tops)
    if splits and not by_split:
        others = sorted(tops - set(splits))
        raise ImportFailed(
            f"{source.text}: split folders {splits} beside other folders {others[:5]}; either "
            "every top folder is a split (train/, val/, test/, each holding class folders) "
            "or every top folder is a class: move the others into their split folders"
        )
    for rel in images:
        parts = rel.split("/")
        split = SPLIT_NAMES[parts.pop(0).lower()] if by_split else None
        if len(parts) < 2:
            under = f"the split folder {rel.split('/')[0]}/" if by_split else "SOURCE itself"
            raise ImportFailed(
                f"{source.describe(rel)}: an image directly in {under}; an image folder puts "
                "each image in a folder named by its class (SOURCE/<class>/<image>, "
                "optionally under train/, val/, test/): move it into its class folder"
            )
        label = parts[0]
        yield Record(
            image=rel,
            fields={"label": label},
            where=source.describe(rel),
            split=split,
            attributes={"class": label, "folder": "/".join(parts[1:-1]), "file": parts[-1]},
        )


FORMAT = ImportFormat(
    "imagefolder",
    "class folders (SOURCE/<class>/<image>), optionally under train/ val/ test/",
    (),
    read,
)

"""The import formats by name: `mpt domain import --from NAME` and its help loop over them.
A new format is one module with a `FORMAT` (`base.ImportFormat`) and one line here."""

from __future__ import annotations

from mpt_core._registry import Registry

from . import coco, imagefolder, parquet, vqa
from .base import ImportFormat

FORMATS: Registry[ImportFormat] = Registry("import format")
for _module in (imagefolder, coco, vqa, parquet):
    FORMATS.register(_module.FORMAT.name, _module.FORMAT)

"""`mpt domain import`: domain folders from the layouts data teams already have (class
folders, COCO captions, VQAv2 questions and answers, Hugging Face Parquet exports), locally
or on S3, and appends to them; see `run` for how nothing is left half-written and `splits`
for how rows get their split.

    from flows.importers import ImportRequest, import_domain

    import_domain("domains", ImportRequest("shop", "imagefolder", "/data/shop"))
"""

from .base import FormatOptions, ImportFormat, Record
from .formats import FORMATS
from .run import ImportRequest, ImportResult, import_domain
from .source import ImportFailed
from .splits import SplitRule

__all__ = [
    "FORMATS",
    "FormatOptions",
    "ImportFailed",
    "ImportFormat",
    "ImportRequest",
    "ImportResult",
    "Record",
    "SplitRule",
    "import_domain",
]

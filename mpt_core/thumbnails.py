"""Small JPEG thumbnails of example images, for reviewers: the flow stores them for the
test-split disagreements, a server for the shadow disagreements it samples (where the
domain allows images to be kept)."""

from __future__ import annotations

import io

from .data import ImageSource, load_image

THUMBNAIL_PX = 96
"""Longest side of a thumbnail, in pixels."""
JPEG_QUALITY = 80


def thumbnail(image: ImageSource, size: int = THUMBNAIL_PX) -> bytes:
    """A JPEG of `image` (PIL image or path) whose longest side is at most `size` pixels."""
    small = load_image(image).copy()
    small.thumbnail((size, size))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()

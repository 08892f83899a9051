"""Image bytes -> RGB PIL image, with size limits checked before anything is decoded.

The file size is checked first, then the width and height from the header (`Image.open`
reads only the header), and only then are the pixels decoded: a decompression bomb (a
small file that decodes to gigapixels) is refused before it costs memory.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

MB = 1024 * 1024
_DATA_URL = re.compile(r"^data:[\w/+.-]*(;[\w=-]+)*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


class ImageRejected(ValueError):
    """The image cannot be used: `status` (413 too large, 415 not an image, 422 broken)."""

    def __init__(self, status: int, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.status = status
        self.problem = problem
        self.fix = fix


def _bytes(n: float) -> str:
    return f"{n / MB:.1f} MB" if n >= MB / 10 else f"{n / 1024:.0f} KB"


def _pixels(n: float) -> str:
    return f"{n / 1e6:.1f} megapixels" if n >= 1e5 else f"{n:,.0f} pixels"


def check_size(size: int, limits: ImageLimits) -> None:
    if size > limits.max_bytes:
        raise ImageRejected(
            413,
            f"is {_bytes(size)}; the limit is {_bytes(limits.max_bytes)}",
            "send a smaller or more compressed image (the server's limit is "
            "MPT_SERVE_MAX_IMAGE_MB)",
        )


def from_base64(text: str, limits: ImageLimits) -> bytes:
    """Decode a base64 string (optionally a `data:image/...;base64,` URL), size-checked first."""
    text = _DATA_URL.sub("", text.strip(), count=1)
    check_size(len(text) * 3 // 4, limits)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageRejected(
            422,
            f"is not valid base64 ({exc})",
            "send the file's bytes base64-encoded (e.g. `base64 -w0 photo.png`), or upload "
            "it as multipart/form-data",
        ) from None


def decode(data: bytes, limits: ImageLimits) -> Image.Image:
    """An RGB image from encoded bytes, or ImageRejected saying why not and what to do."""
    if not data:
        raise ImageRejected(422, "is empty", "send the image file's bytes")
    check_size(len(data), limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit rules
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise _too_many_pixels(
            f"over {_pixels(2 * (Image.MAX_IMAGE_PIXELS or 0))}: a decompression bomb", limits
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageRejected(
            415,
            f"is not an image this server can read ({type(exc).__name__})",
            "send a PNG, JPEG, WebP, BMP, GIF or TIFF file",
        ) from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected(422, f"has no pixels ({width}x{height})", "send a non-empty image")
    if width * height > limits.max_pixels:
        raise _too_many_pixels(f"{width}x{height} = {_pixels(width * height)}", limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageRejected(
            422,
            f"cannot be decoded: it is truncated or corrupt ({type(exc).__name__}: {exc})",
            "send the complete, uncorrupted file",
        ) from None


def _too_many_pixels(what: str, limits: ImageLimits) -> ImageRejected:
    return ImageRejected(
        413,
        f"is too large ({what}); the limit is {_pixels(limits.max_pixels)}",
        "downscale the image before sending it (the server's limit is "
        "MPT_SERVE_MAX_IMAGE_MEGAPIXELS)",
    )

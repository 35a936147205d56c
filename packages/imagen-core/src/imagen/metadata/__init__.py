"""Generation parameters inside image files: writing them while saving, reading them back.

- PNG: imagen's own ``imagen`` text chunk (the sidecar's JSON) and an A1111 ``parameters``
  chunk, inserted after ``IHDR``.
- JPEG and WebP: the A1111 text in the EXIF UserComment.

Nothing here decodes or re-encodes pixels: the compressed image data is copied as is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from imagen.metadata import jpeg, png, webp
from imagen.metadata.exif import build_user_comment

__all__ = ["EXTENSIONS", "IMAGEN_KEY", "PARAMETERS_KEY", "copy_with_metadata", "sniff"]

IMAGEN_KEY = "imagen"
PARAMETERS_KEY = "parameters"
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}

Texts = Callable[[int, int], tuple[str, str]]
"""Given (width, height): (imagen JSON, A1111 parameters text)."""


def sniff(head: bytes) -> str | None:
    """The MIME type the first bytes of a file announce, or None when unknown."""
    if head.startswith(png.SIGNATURE):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def copy_with_metadata(
    mime_type: str, src: BinaryIO, dst: BinaryIO, texts: Texts
) -> tuple[int, int] | None:
    """Copy an image from ``src`` to ``dst``, embedding the texts where the format allows.

    :return: the image's (width, height), or None for a format imagen doesn't embed into
        (copied unchanged).
    """
    if mime_type == "image/png":
        return png.copy_with_text(
            src, dst, lambda w, h: dict(zip((IMAGEN_KEY, PARAMETERS_KEY), texts(w, h), strict=True))
        )
    if mime_type == "image/jpeg":
        return jpeg.copy_with_exif(src, dst, lambda w, h: build_user_comment(texts(w, h)[1]))
    if mime_type == "image/webp":
        return webp.copy_with_exif(src, dst, lambda w, h: build_user_comment(texts(w, h)[1]))
    return None

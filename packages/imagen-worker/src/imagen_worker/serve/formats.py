"""An image in the format an OpenAI-style request asked for (``output_format``).

Backends make what they make (ComfyUI saves PNG); the Images API lets a caller ask for
PNG, JPEG or WebP and a compression level. The stored file is never changed: a copy in the
asked format is made once, cached beside the thumbnails, and carries the same parameters
text (A1111's ``parameters``; imagen's own record too in a PNG) as the original.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Literal

from imagen_worker.serve.copies import copy_path

__all__ = ["FORMATS", "OutputFormat", "in_format"]

OutputFormat = Literal["png", "jpeg", "webp"]
FORMATS: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_DEFAULT_QUALITY = 90  # when a lossy format is asked for without output_compression


def in_format(
    source: Path, mime_type: str, fmt: OutputFormat | None, compression: int | None, cache: Path
) -> tuple[Path, str]:
    """``source`` as ``fmt`` (compressed to ``compression``, 0-100): a path and its type.

    The source itself when it already is what was asked for (or nothing was asked).
    """
    wanted = FORMATS[fmt] if fmt is not None else mime_type
    if wanted == mime_type and (compression is None or wanted == "image/png"):
        return source, mime_type
    path = copy_path(cache, source, f"{wanted}\0{compression}", fmt or "png")
    if not path.is_file():
        _convert(source, wanted, compression, path)
    return path, wanted


def _convert(source: Path, wanted: str, compression: int | None, path: Path) -> None:
    from PIL import Image

    from imagen.metadata import copy_with_metadata

    imagen_text, parameters = _texts(source)
    pixels = io.BytesIO()
    with Image.open(source) as picture:
        if wanted == "image/jpeg" and picture.mode not in ("RGB", "L"):
            picture = picture.convert("RGB")
        quality = _DEFAULT_QUALITY if compression is None else compression
        if wanted == "image/png":
            picture.save(pixels, "PNG", compress_level=_png_level(compression))
        elif wanted == "image/jpeg":
            picture.save(pixels, "JPEG", quality=max(1, quality))
        else:
            picture.save(pixels, "WEBP", quality=quality, method=4)
    pixels.seek(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            if imagen_text or parameters:
                copy_with_metadata(wanted, pixels, out, lambda w, h: (imagen_text, parameters))
            else:
                out.write(pixels.getvalue())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _png_level(compression: int | None) -> int:
    """OpenAI's 0-100 compression, as zlib's 0-9 for PNG (lossless either way)."""
    return 6 if compression is None else round(compression * 9 / 100)


def _texts(source: Path) -> tuple[str, str]:
    """The imagen record and the A1111 parameters the source carries ("" when it has none)."""
    from imagen.metadata import IMAGEN_KEY, PARAMETERS_KEY, jpeg, png, webp
    from imagen.metadata.exif import read_user_comment

    with source.open("rb") as src:
        head = src.read(12)
        src.seek(0)
        if head.startswith(png.SIGNATURE):
            texts, _ = png.read_text(src)
            return texts.get(IMAGEN_KEY, ""), texts.get(PARAMETERS_KEY, "")
        reader = jpeg.read_exif if head.startswith(b"\xff\xd8") else webp.read_exif
        tiff, _ = reader(src)
    return "", (read_user_comment(tiff) or "") if tiff else ""

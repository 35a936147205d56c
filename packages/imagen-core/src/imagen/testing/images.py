"""Strict checks of image bytes: the container whole, every pixel decoded, the real size.

Decoders are kind: Pillow decodes a PNG that lost its ``IEND`` chunk, or a JPEG without
its end marker, without a word. Other readers (browsers, galleries, imagen's own metadata
writer) are not, so the suite checks the container first, then decodes every pixel.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from imagen.metadata import sniff

__all__ = ["Decoded", "ImageDefect", "decode"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageDefect(Exception):
    """An image that is not what it claims to be; the message says what is wrong."""


@dataclass(frozen=True)
class Decoded:
    """An image that passed every check."""

    width: int
    height: int
    mode: str
    pixels: bytes


def _png(data: bytes) -> None:
    position = len(_PNG_SIGNATURE)
    names: list[bytes] = []
    while position < len(data):
        if position + 8 > len(data):
            raise ImageDefect(f"the PNG ends inside a chunk header at byte {position}")
        length, name = struct.unpack(">I4s", data[position : position + 8])
        end = position + 8 + length + 4
        if end > len(data):
            raise ImageDefect(f"the PNG's {name!r} chunk runs past the end of the data")
        body = data[position + 4 : end - 4]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(body) != crc:
            raise ImageDefect(f"the PNG's {name!r} chunk at byte {position} has a bad CRC")
        names.append(name)
        position = end
        if name == b"IEND":
            break
    if not names or names[0] != b"IHDR":
        raise ImageDefect("the PNG does not start with an IHDR chunk")
    if b"IDAT" not in names:
        raise ImageDefect("the PNG has no IDAT chunk (no pixel data)")
    if names[-1] != b"IEND":
        raise ImageDefect(
            "the PNG has no IEND chunk: it was cut short (a download that stopped early, a "
            "buffer not flushed); send every byte"
        )
    if position != len(data):
        raise ImageDefect(f"the PNG has {len(data) - position} bytes after its IEND chunk")


def _jpeg(data: bytes) -> None:
    if not data.endswith(b"\xff\xd9"):
        raise ImageDefect(
            "the JPEG does not end with its EOI marker (FF D9): it was cut short; send every byte"
        )


def _webp(data: bytes) -> None:
    (size,) = struct.unpack("<I", data[4:8])
    if size + 8 != len(data):
        raise ImageDefect(
            f"the WebP's RIFF header says {size + 8} bytes, but it has {len(data)}: it was "
            "cut short or padded"
        )


def _gif(data: bytes) -> None:
    if not data.endswith(b"\x3b"):
        raise ImageDefect("the GIF does not end with its trailer byte (3B): it was cut short")


_CONTAINERS = {"image/png": _png, "image/jpeg": _jpeg, "image/webp": _webp, "image/gif": _gif}


def decode(data: bytes, mime_type: str) -> Decoded:
    """Check that ``data`` is one whole image of ``mime_type``, and decode every pixel.

    :raises ImageDefect: what is wrong, in a sentence for the adapter's author.
    """
    from PIL import Image

    actual = sniff(data[:16])
    if actual != mime_type:
        raise ImageDefect(f"it says {mime_type} but its bytes are {actual or 'no known image'}")
    _CONTAINERS[actual](data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return Decoded(image.width, image.height, image.mode, image.tobytes())
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDefect(f"it does not decode: {exc}") from None

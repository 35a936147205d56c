"""JPEG: insert an EXIF APP1 segment without touching the compressed image data."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import BinaryIO

from imagen.metadata.streams import copy_rest, read_exact

__all__ = ["copy_with_exif", "read_exif"]

SOI = b"\xff\xd8"
_SOS = 0xDA
_APP0 = 0xE0
_APP1 = 0xE1
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length


def _segments(src: BinaryIO) -> list[tuple[int, bytes]]:
    """The marker segments up to and including SOS's header: (marker, payload)."""
    if read_exact(src, 2) != SOI:
        raise ValueError("not a JPEG file")
    segments = []
    while True:
        byte = read_exact(src, 1)
        if byte != b"\xff":
            raise ValueError("JPEG marker expected")
        marker = read_exact(src, 1)[0]
        while marker == 0xFF:  # fill bytes before a marker
            marker = read_exact(src, 1)[0]
        if marker in _STANDALONE:
            segments.append((marker, b""))
            continue
        (length,) = struct.unpack(">H", read_exact(src, 2))
        segments.append((marker, read_exact(src, length - 2)))
        if marker == _SOS:
            return segments


def _is_exif(marker: int, payload: bytes) -> bool:
    return marker == _APP1 and payload.startswith(b"Exif\0\0")


def copy_with_exif(
    src: BinaryIO, dst: BinaryIO, tiff_for: Callable[[int, int], bytes]
) -> tuple[int, int]:
    """Copy the JPEG in ``src`` to ``dst`` with an EXIF segment right after SOI/APP0.

    The header segments (small) are read first to learn the size from the SOF segment;
    the entropy-coded data after them is copied as a stream. An EXIF segment already in
    the file is replaced, so readers find one answer.

    :param tiff_for: called with (width, height); returns the TIFF block to embed.
    :return: (width, height).
    """
    segments = _segments(src)
    size = next(
        (
            struct.unpack(">HH", payload[1:5])[::-1]
            for marker, payload in segments
            if marker in _SOF
        ),
        None,
    )
    if size is None:
        raise ValueError("JPEG has no frame header")
    width, height = size
    exif = b"Exif\0\0" + tiff_for(width, height)
    dst.write(SOI)
    inserted = False
    for marker, payload in segments:
        if not inserted and marker != _APP0:
            dst.write(b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif)
            inserted = True
        if _is_exif(marker, payload):
            continue
        if marker in _STANDALONE:
            dst.write(bytes((0xFF, marker)))
        else:
            dst.write(bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload)
    copy_rest(src, dst)
    return width, height


def read_exif(src: BinaryIO) -> tuple[bytes | None, tuple[int, int] | None]:
    r"""The EXIF block (without ``Exif\0\0``) and the size of the JPEG in ``src``."""
    exif = None
    size = None
    for marker, payload in _segments(src):
        if exif is None and _is_exif(marker, payload):
            exif = payload[6:]
        if size is None and marker in _SOF:
            height, width = struct.unpack(">HH", payload[1:5])
            size = (width, height)
    return exif, size

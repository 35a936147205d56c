"""WebP: add an EXIF chunk to the RIFF container without touching the bitstream.

A simple WebP (one ``VP8 `` or ``VP8L`` chunk) becomes an extended one: a ``VP8X`` header
with the EXIF flag is put in front, and the ``EXIF`` chunk goes last, as the container
specification orders them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import BinaryIO

from imagen.metadata.streams import copy_exact, read_exact, read_upto

__all__ = ["copy_with_exif", "read_exif"]

_EXIF_FLAG = 0x08
_ALPHA_FLAG = 0x10


def _header(src: BinaryIO) -> None:
    head = read_exact(src, 12)
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        raise ValueError("not a WebP file")


def _chunk_header(src: BinaryIO) -> tuple[bytes, int] | None:
    head = read_upto(src, 8)
    if not head:
        return None
    if len(head) < 8:
        raise ValueError("WebP stream ends inside a chunk header")
    kind, length = struct.unpack("<4sI", head)
    return kind, length


def _size_of(kind: bytes, data: bytes) -> tuple[int, int, bool]:
    """(width, height, has_alpha) from the start of a VP8X, VP8 or VP8L chunk."""
    if kind == b"VP8X":
        width = int.from_bytes(data[4:7], "little") + 1
        height = int.from_bytes(data[7:10], "little") + 1
        return width, height, bool(data[0] & _ALPHA_FLAG)
    if kind == b"VP8 ":
        if data[3:6] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 frame header")
        width, height = struct.unpack("<HH", data[6:10])
        return width & 0x3FFF, height & 0x3FFF, False
    if kind == b"VP8L":
        if data[0] != 0x2F:
            raise ValueError("bad VP8L signature")
        bits = int.from_bytes(data[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
    raise ValueError(f"unexpected first WebP chunk {kind!r}")


def _write_chunk(dst: BinaryIO, kind: bytes, data: bytes) -> None:
    dst.write(struct.pack("<4sI", kind, len(data)) + data + (b"\0" if len(data) % 2 else b""))


def copy_with_exif(
    src: BinaryIO, dst: BinaryIO, tiff_for: Callable[[int, int], bytes]
) -> tuple[int, int]:
    """Copy the WebP in ``src`` to ``dst`` (which must be seekable) with an EXIF chunk.

    :param tiff_for: called with (width, height); returns the TIFF block to embed.
    :return: (width, height).
    """
    _header(src)
    start = dst.tell()
    dst.write(b"RIFF\0\0\0\0WEBP")
    first = _chunk_header(src)
    if first is None:
        raise ValueError("WebP has no image chunk")
    kind, length = first
    peek = read_exact(src, min(length, 10))
    width, height, alpha = _size_of(kind, peek)
    if kind == b"VP8X":
        rest = read_exact(src, length - len(peek) + length % 2)
        flags = bytes((peek[0] | _EXIF_FLAG,))
        dst.write(struct.pack("<4sI", kind, length) + flags + peek[1:] + rest)
    else:
        flags = _EXIF_FLAG | (_ALPHA_FLAG if alpha else 0)
        canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        _write_chunk(dst, b"VP8X", bytes((flags, 0, 0, 0)) + canvas)
        dst.write(struct.pack("<4sI", kind, length) + peek)
        copy_exact(src, dst, length - len(peek) + length % 2)
    while (header := _chunk_header(src)) is not None:
        kind, length = header
        padded = length + length % 2
        if kind == b"EXIF":
            read_exact(src, padded)  # dropped: ours replaces it
            continue
        dst.write(struct.pack("<4sI", kind, length))
        copy_exact(src, dst, padded)
    _write_chunk(dst, b"EXIF", tiff_for(width, height))
    end = dst.tell()
    dst.seek(start + 4)
    dst.write(struct.pack("<I", end - start - 8))
    dst.seek(end)
    return width, height


def read_exif(src: BinaryIO) -> tuple[bytes | None, tuple[int, int] | None]:
    """The EXIF block and the size of the WebP in ``src``."""
    _header(src)
    exif = None
    size = None
    while (header := _chunk_header(src)) is not None:
        kind, length = header
        data = read_exact(src, length)
        if length % 2:
            src.read(1)
        if size is None and kind in (b"VP8X", b"VP8 ", b"VP8L"):
            size = _size_of(kind, data)[:2]
        if kind == b"EXIF" and exif is None:
            exif = data[6:] if data.startswith(b"Exif\0\0") else data
    return exif, size

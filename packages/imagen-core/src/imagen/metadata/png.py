"""PNG: copy a stream chunk by chunk, adding text chunks after ``IHDR``; read them back.

Only the text chunks are touched: the image data is copied byte for byte, never decoded.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO

from imagen.metadata.streams import copy_exact, read_exact, read_upto

SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_TYPES = (b"tEXt", b"iTXt", b"zTXt")

__all__ = ["SIGNATURE", "copy_with_text", "read_text"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def text_chunk(keyword: str, text: str) -> bytes:
    """A ``tEXt`` chunk when ``text`` is Latin-1, else an uncompressed UTF-8 ``iTXt``."""
    key = keyword.encode("latin-1")
    try:
        return _chunk(b"tEXt", key + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        return _chunk(b"iTXt", key + b"\0\0\0\0\0" + text.encode("utf-8"))


def _headers(src: BinaryIO) -> Iterator[tuple[bytes, int]]:
    """Yield (type, length) of each chunk; the caller consumes data and CRC."""
    if read_exact(src, 8) != SIGNATURE:
        raise ValueError("not a PNG file")
    while True:
        head = read_upto(src, 8)
        if not head:
            return
        if len(head) < 8:
            raise ValueError("PNG stream ends inside a chunk header")
        length, kind = struct.unpack(">I4s", head)
        yield kind, length


def _keyword(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("latin-1")


def copy_with_text(
    src: BinaryIO, dst: BinaryIO, texts_for: Callable[[int, int], Mapping[str, str]]
) -> tuple[int, int]:
    """Copy the PNG in ``src`` to ``dst`` with text chunks inserted after ``IHDR``.

    :param texts_for: called with (width, height) once ``IHDR`` is read; returns the
        keyword → text pairs to add. Existing text chunks with the same keywords are
        dropped, so the file never holds two answers.
    :return: (width, height).
    """
    dst.write(SIGNATURE)
    size: tuple[int, int] | None = None
    replaced: set[str] = set()
    for kind, length in _headers(src):
        if kind == b"IHDR":
            data = read_exact(src, length)
            crc = read_exact(src, 4)
            size = struct.unpack(">II", data[:8])
            dst.write(struct.pack(">I", length) + kind + data + crc)
            texts = texts_for(*size)
            replaced = set(texts)
            dst.writelines(text_chunk(keyword, text) for keyword, text in texts.items())
        elif kind in TEXT_TYPES:
            data = read_exact(src, length)
            crc = read_exact(src, 4)
            if _keyword(data) not in replaced:
                dst.write(struct.pack(">I", length) + kind + data + crc)
        else:
            dst.write(struct.pack(">I", length) + kind)
            copy_exact(src, dst, length + 4)
        if kind == b"IEND":
            break
    if size is None:
        raise ValueError("PNG has no IHDR chunk")
    return size


def _decode_text(kind: bytes, data: bytes) -> tuple[str, str]:
    keyword, _, rest = data.partition(b"\0")
    key = keyword.decode("latin-1")
    if kind == b"tEXt":
        return key, rest.decode("latin-1")
    if kind == b"zTXt":
        return key, zlib.decompress(rest[1:]).decode("latin-1")
    compressed, _method = rest[0], rest[1]
    _language, _, rest = rest[2:].partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    return key, (zlib.decompress(text) if compressed else text).decode("utf-8")


def read_text(src: BinaryIO) -> tuple[dict[str, str], tuple[int, int] | None]:
    """Every text chunk of the PNG in ``src`` (first one wins per keyword), and its size."""
    texts: dict[str, str] = {}
    size = None
    for kind, length in _headers(src):
        if kind == b"IHDR" or kind in TEXT_TYPES:
            data = read_exact(src, length)
            src.seek(4, 1)
            if kind == b"IHDR":
                size = struct.unpack(">II", data[:8])
            else:
                try:
                    key, text = _decode_text(kind, data)
                except (ValueError, IndexError, zlib.error, UnicodeDecodeError):
                    continue  # one damaged chunk shouldn't hide the others
                texts.setdefault(key, text)
        else:
            src.seek(length + 4, 1)
        if kind == b"IEND":
            break
    return texts, size

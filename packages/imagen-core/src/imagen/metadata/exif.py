"""A minimal EXIF (TIFF) block holding one UserComment, and reading one back.

AUTOMATIC1111 and the galleries that read its format (Civitai, Infinite Image Browsing)
look for the generation parameters of a JPEG or WebP in the Exif IFD's UserComment, with
the ``UNICODE`` character code and UTF-16 text. We write a big-endian TIFF so the UTF-16 is
big-endian too, as readers expect, and read either byte order.
"""

from __future__ import annotations

import struct

__all__ = ["MAX_TIFF", "build_user_comment", "read_user_comment"]

_EXIF_IFD_POINTER = 0x8769
_USER_COMMENT = 0x9286
_UNICODE = b"UNICODE\0"
_ASCII = b"ASCII\0\0\0"
MAX_TIFF = 65_000  # a JPEG APP1 segment holds at most 65,533 bytes, "Exif\0\0" included


def build_user_comment(text: str) -> bytes:
    """A big-endian TIFF block with IFD0 → Exif IFD → UserComment = ``text``.

    Text too long for one JPEG segment is cut, with an ellipsis, rather than dropped.
    """
    comment = _UNICODE + text.encode("utf-16-be")
    overhead = 8 + 18 + 18
    if len(comment) + overhead > MAX_TIFF:
        keep = (MAX_TIFF - overhead - len(_UNICODE)) // 2 - 1
        comment = _UNICODE + (text[:keep] + "…").encode("utf-16-be")
    ifd0 = 8
    exif_ifd = ifd0 + 2 + 12 + 4
    data = exif_ifd + 2 + 12 + 4
    header = b"MM\x00\x2a" + struct.pack(">I", ifd0)
    first = struct.pack(">H", 1) + struct.pack(">HHII", _EXIF_IFD_POINTER, 4, 1, exif_ifd)
    first += struct.pack(">I", 0)
    second = struct.pack(">H", 1) + struct.pack(">HHII", _USER_COMMENT, 7, len(comment), data)
    second += struct.pack(">I", 0)
    return header + first + second + comment


def _decode(raw: bytes, little: bool) -> str:
    code, body = raw[:8], raw[8:]
    if code == _UNICODE:
        if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return body.decode("utf-16")
        return body.decode("utf-16-le" if little else "utf-16-be", errors="replace")
    if code == _ASCII or code == b"\0" * 8:
        return body.decode("utf-8", errors="replace").rstrip("\0")
    return raw.decode("utf-8", errors="replace").rstrip("\0")


def read_user_comment(tiff: bytes) -> str | None:
    r"""The UserComment text of an EXIF block (with or without ``Exif\0\0``), or None."""
    if tiff.startswith(b"Exif\0\0"):
        tiff = tiff[6:]
    if tiff[:4] not in (b"MM\x00\x2a", b"II\x2a\x00"):
        return None
    little = tiff[:2] == b"II"
    end = "<" if little else ">"
    try:

        def entries(offset: int) -> dict[int, tuple[int, int, int]]:
            (count,) = struct.unpack_from(end + "H", tiff, offset)
            found = {}
            for i in range(count):
                tag, kind, n, value = struct.unpack_from(end + "HHII", tiff, offset + 2 + 12 * i)
                found[tag] = (kind, n, value)
            return found

        (ifd0,) = struct.unpack_from(end + "I", tiff, 4)
        pointer = entries(ifd0).get(_EXIF_IFD_POINTER)
        if pointer is None:
            return None
        comment = entries(pointer[2]).get(_USER_COMMENT)
        if comment is None:
            return None
        _, length, offset = comment
        raw = tiff[offset : offset + length] if length > 4 else b""
        return _decode(raw, little) if len(raw) >= 8 else None
    except struct.error:
        return None

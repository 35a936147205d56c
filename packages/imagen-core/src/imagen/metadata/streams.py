"""Small helpers for copying binary streams in bounded blocks."""

from __future__ import annotations

from typing import BinaryIO

BLOCK = 1 << 16


def read_upto(src: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, fewer only at the end of the stream (short reads are retried)."""
    data = src.read(size)
    while data and len(data) < size:
        more = src.read(size - len(data))
        if not more:
            break
        data += more
    return data


def read_exact(src: BinaryIO, size: int) -> bytes:
    """Read exactly ``size`` bytes, or raise ValueError at a premature end."""
    data = read_upto(src, size)
    if len(data) < size:
        raise ValueError(f"stream ended {size - len(data)} bytes early")
    return data


def copy_exact(src: BinaryIO, dst: BinaryIO, size: int) -> None:
    """Copy exactly ``size`` bytes from ``src`` to ``dst``, a block at a time."""
    while size:
        block = src.read(min(BLOCK, size))
        if not block:
            raise ValueError(f"stream ended {size} bytes early")
        dst.write(block)
        size -= len(block)


def copy_rest(src: BinaryIO, dst: BinaryIO) -> None:
    """Copy everything left in ``src`` to ``dst``, a block at a time."""
    while block := src.read(BLOCK):
        dst.write(block)

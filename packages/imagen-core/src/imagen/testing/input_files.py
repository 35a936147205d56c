"""Input images for the suite's checks of input handling, and a meter of how they are read.

The pictures are seeded noise, so each file's bytes are its own (the suite finds them in
what reached the stand-in) and two of them make visibly different edits. A large one is a
small picture padded with a private PNG chunk every decoder skips: the bytes of a 20 MB
upload without the minutes of decoding a 20 MB photograph.
"""

from __future__ import annotations

import io
import random
import struct
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagen.inputs import InputImage, InputRole, load_input

__all__ = ["MeteredInput", "ReadMeter", "make_input"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_END = len(_PNG_SIGNATURE) + 25  # the signature, then IHDR (13 bytes + 12 framing)
_PADDING_CHUNK = b"imGp"  # ancillary, private, safe to copy: every decoder skips it


class ReadMeter:
    """How an input's file was read through :meth:`InputImage.open`: opens, bytes, largest read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.opens = 0
        self.total = 0
        self.largest = 0

    def opened(self) -> None:
        with self._lock:
            self.opens += 1

    def read(self, count: int) -> None:
        with self._lock:
            self.total += count
            self.largest = max(self.largest, count)


class _MeteredReader(io.BufferedIOBase):
    """A read-only file that tells its :class:`ReadMeter` each read's size."""

    def __init__(self, raw: io.BufferedReader, meter: ReadMeter) -> None:
        super().__init__()
        self._raw = raw
        self._meter = meter
        self.name = raw.name
        self.mode = "rb"

    def _count(self, data: Any) -> Any:
        self._meter.read(len(data) if isinstance(data, bytes | bytearray) else data or 0)
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._count(self._raw.read(size))

    def read1(self, size: int = -1) -> bytes:
        return self._count(self._raw.read1(size))

    def readinto(self, buffer: Any) -> int:
        return self._count(self._raw.readinto(buffer))

    def readinto1(self, buffer: Any) -> int:
        return self._count(self._raw.readinto1(buffer))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._raw.close()
        super().close()


@dataclass(frozen=True)
class MeteredInput(InputImage):
    """An :class:`InputImage` whose :meth:`open` counts what is read into :attr:`meter`."""

    meter: ReadMeter = field(default_factory=ReadMeter, compare=False, repr=False)

    def open(self) -> io.BufferedIOBase:  # type: ignore[override]
        raw = super().open()
        self.meter.opened()
        return _MeteredReader(raw, self.meter)  # type: ignore[arg-type]


def make_input(
    directory: Path,
    role: InputRole,
    size: tuple[int, int],
    seed: int,
    *,
    mode: str = "RGB",
    pad_to: int = 0,
) -> MeteredInput:
    """A checked input of ``role``: seeded noise of ``size``, padded to ``pad_to`` bytes.

    A mask (``mode="L"``) is white (repaint) on its left half, black (keep) on its right.
    """
    from PIL import Image

    width, height = size
    if mode == "L":
        picture = Image.new("L", size, 0)
        picture.paste(255, (0, 0, max(1, width // 2), height))
    else:
        noise = random.Random(seed).randbytes(width * height * 3)
        picture = Image.frombytes("RGB", size, noise)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    data = buffer.getvalue()
    path = directory / f"imagen-conformance-{role}-{seed}.png"
    with path.open("wb") as out:
        out.write(data[:_IHDR_END])
        if pad_to > len(data):
            _write_padding(out, pad_to - len(data) - 12, seed)
        out.write(data[_IHDR_END:])
    checked = load_input(path, role)
    fields = {name: getattr(checked, name) for name in checked.__dataclass_fields__}
    return MeteredInput(**fields)


def _write_padding(out: io.BufferedWriter, length: int, seed: int) -> None:
    """One chunk of ``length`` random bytes, written as it is made (with its CRC)."""
    out.write(struct.pack(">I", length) + _PADDING_CHUNK)
    crc = zlib.crc32(_PADDING_CHUNK)
    rng = random.Random(seed)
    left = length
    while left:
        piece = rng.randbytes(min(left, 1024 * 1024))
        crc = zlib.crc32(piece, crc)
        out.write(piece)
        left -= len(piece)
    out.write(struct.pack(">I", crc & 0xFFFFFFFF))

"""Images drawn in the terminal itself: the kitty, iTerm2 and sixel graphics protocols.

Which protocol a terminal speaks is read from the environment its emulator sets
(``KITTY_WINDOW_ID``, ``TERM_PROGRAM``, ``TERM``), or from ``preview.inline`` when the
user says. Inside tmux, images go to a tmux window instead (:mod:`imagen.preview`): tmux
does not pass these sequences through by default.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping
from pathlib import Path

__all__ = ["PROTOCOLS", "detect", "encode"]

PROTOCOLS = ("kitty", "iterm2", "sixel")
_KITTY_CHUNK = 4096  # base64 bytes per escape sequence, as kitty's protocol asks
_SIXEL_MAX = (800, 600)  # pixels: larger images are scaled down to fit
_CELLS = 60  # terminal columns the kitty and iTerm2 images span (aspect kept)


def detect(environ: Mapping[str, str]) -> str | None:
    """The graphics protocol of the terminal ``environ`` describes, if any it knows."""
    term = environ.get("TERM", "")
    program = environ.get("TERM_PROGRAM", "")
    if environ.get("KITTY_WINDOW_ID") or term in ("xterm-kitty", "xterm-ghostty"):
        return "kitty"
    if program in ("ghostty",):
        return "kitty"
    if program in ("iTerm.app", "WezTerm", "mintty") or environ.get("LC_TERMINAL") == "iTerm2":
        return "iterm2"
    if term in ("foot", "foot-extra", "mlterm", "yaft-256color") or "sixel" in term:
        return "sixel"
    return None


def encode(path: Path, protocol: str, columns: int = _CELLS) -> bytes:
    """The bytes that draw the image at ``path`` in a terminal speaking ``protocol``."""
    if protocol == "kitty":
        return _kitty(_png(path), columns)
    if protocol == "iterm2":
        return _iterm2(path, columns)
    if protocol == "sixel":
        return _sixel(path)
    raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")


def _png(path: Path) -> bytes:
    data = path.read_bytes()
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    from PIL import Image  # kitty's f=100 takes PNG only: convert JPEG and WebP

    out = io.BytesIO()
    with Image.open(path) as image:
        image.save(out, format="PNG")
    return out.getvalue()


def _kitty(png: bytes, columns: int) -> bytes:
    payload = base64.standard_b64encode(png)
    chunks = [payload[i : i + _KITTY_CHUNK] for i in range(0, len(payload), _KITTY_CHUNK)]
    out = []
    for number, chunk in enumerate(chunks):
        more = 1 if number < len(chunks) - 1 else 0
        head = f"a=T,f=100,c={columns},m={more}" if number == 0 else f"m={more}"
        out.append(b"\x1b_G" + head.encode() + b";" + chunk + b"\x1b\\")
    return b"".join(out) + b"\n"


def _iterm2(path: Path, columns: int) -> bytes:
    data = path.read_bytes()
    name = base64.b64encode(path.name.encode()).decode()
    head = f"\x1b]1337;File=name={name};size={len(data)};inline=1;width={columns};"
    return head.encode() + b"preserveAspectRatio=1:" + base64.b64encode(data) + b"\x07\n"


def _sixel(path: Path) -> bytes:
    """A DEC sixel image: up to 255 colours, six pixel rows per band, runs compressed."""
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    image.thumbnail(_SIXEL_MAX)
    indexed = image.quantize(colors=255, dither=Image.Dither.NONE)
    palette = indexed.getpalette() or []
    width, height = indexed.size
    pixels = indexed.tobytes()
    used = sorted(set(pixels))
    out = [b'\x1bP0;1;0q"1;1;%d;%d' % (width, height)]
    for colour in used:
        r, g, b = palette[3 * colour : 3 * colour + 3]
        out.append(b"#%d;2;%d;%d;%d" % (colour, r * 100 // 255, g * 100 // 255, b * 100 // 255))
    to_char = bytes(range(63, 127)) + bytes(256 - 64)  # sixel value v → chr(63 + v)
    for top in range(0, height, 6):
        rows = [pixels[y * width : (y + 1) * width] for y in range(top, min(top + 6, height))]
        band_colours = sorted(set().union(*(set(row) for row in rows)))
        for n, colour in enumerate(band_colours):
            bits = 0
            for dy, row in enumerate(rows):
                # This colour's pixels of the row as bit dy, the others 0; the six rows'
                # bits never overlap, so OR-ing them as one big integer makes each column.
                table = bytearray(256)
                table[colour] = 1 << dy
                bits |= int.from_bytes(row.translate(table), "big")
            line = bits.to_bytes(width, "big").translate(to_char)
            out.append(b"#%d" % colour + _runs(line) + (b"$" if n < len(band_colours) - 1 else b""))
        out.append(b"-")
    out.append(b"\x1b\\\n")
    return b"".join(out)


_RUN = re.compile(rb"(.)\1{3,}")


def _runs(line: bytes) -> bytes:
    return _RUN.sub(lambda m: b"!%d%s" % (len(m.group(0)), m.group(1)), line)

"""Text in the placeholder pictures, in any script the machine has a font for.

Pillow's bundled font draws the Latin alphabets the same on every machine, so it stays the
first choice, character by character; a character it has no glyph for (Japanese, Chinese,
Korean, Greek, Cyrillic, Arabic, …) is drawn with the first font found on the system that
has one: the user's own choice (``IMAGEN_FONT``, a font file), then well-known fonts of
Linux distributions, macOS and Windows. Nothing is downloaded. A character no font has is
drawn as the bundled font's box, as before.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["FontChain", "font_chain", "system_fonts"]

# Fonts with wide coverage, by file name, in the order they are preferred.
KNOWN = (
    "NotoSansCJK-Regular.ttc", "NotoSansCJKjp-Regular.otf", "NotoSansJP-Regular.otf",
    "NotoSansJP-Regular.ttf", "NotoSansSC-Regular.otf", "DroidSansFallbackFull.ttf",
    "DroidSansFallback.ttf", "wqy-microhei.ttc", "wqy-zenhei.ttc", "ipagp.ttf", "ipag.ttf",
    "Hiragino Sans GB.ttc", "PingFang.ttc", "ヒラギノ角ゴシック W3.ttc", "AppleSDGothicNeo.ttc",
    "Arial Unicode.ttf", "msgothic.ttc", "YuGothR.ttc", "msyh.ttc", "malgun.ttf",
    "DejaVuSans.ttf", "NotoSans-Regular.ttf", "LiberationSans-Regular.ttf", "arial.ttf",
)  # fmt: skip


def _font_dirs() -> list[Path]:
    home = Path(os.path.expanduser("~"))
    dirs = [home / ".local/share/fonts", home / ".fonts", Path("/usr/local/share/fonts")]
    dirs.append(Path("/usr/share/fonts"))
    if sys.platform == "darwin":
        dirs += [home / "Library/Fonts", Path("/Library/Fonts"), Path("/System/Library/Fonts")]
    if sys.platform == "win32":
        dirs.append(Path(os.environ.get("WINDIR", r"C:\Windows")) / "Fonts")
    return [d for d in dirs if d.is_dir()]


@functools.cache
def system_fonts() -> tuple[Path, ...]:
    """The font files to fall back on, best first: ``IMAGEN_FONT``, then :data:`KNOWN`."""
    found: dict[str, Path] = {}
    wanted = {name.lower() for name in KNOWN}
    for directory in _font_dirs():
        for root, _, files in os.walk(directory):
            for name in files:
                if name.lower() in wanted and name.lower() not in found:
                    found[name.lower()] = Path(root, name)
    chosen = [found[name.lower()] for name in KNOWN if name.lower() in found]
    own = os.environ.get("IMAGEN_FONT")
    return tuple(([Path(own)] if own and Path(own).is_file() else []) + chosen)


def _ink(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, char: str) -> bytes:
    """What ``font`` draws for ``char``: equal to its missing-glyph box when it has none."""
    left, top, right, bottom = (int(v) for v in font.getbbox(char))
    image = Image.new("L", (max(1, right - left), max(1, bottom - top)))
    ImageDraw.Draw(image).text((-left, -top), char, font=font, fill=255)
    return f"{right - left}x{bottom - top}".encode() + image.tobytes()


class FontChain:
    """Fonts tried in order for each character; measures and draws mixed-script text."""

    def __init__(self, fonts: list[ImageFont.FreeTypeFont | ImageFont.ImageFont]) -> None:
        self.fonts = fonts
        self.size = getattr(fonts[0], "size", 10)
        self._missing = [_ink(font, "\U0010fffd") for font in fonts]  # a character no font has
        self._choice: dict[str, int] = {}

    def _index(self, char: str) -> int:
        if char not in self._choice:
            self._choice[char] = 0
            if not char.isspace():
                for index, font in enumerate(self.fonts):
                    if _ink(font, char) != self._missing[index]:
                        self._choice[char] = index
                        break
        return self._choice[char]

    def runs(self, text: str) -> Iterator[tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, str]]:
        """``text`` cut into runs that one font draws each (spaces join the run they are in)."""
        start, current = 0, None
        for position, char in enumerate(text):
            index = current if char.isspace() and current is not None else self._index(char)
            if current is not None and index != current:
                yield self.fonts[current], text[start:position]
                start = position
            current = index
        if current is not None:
            yield self.fonts[current], text[start:]

    def getlength(self, text: str) -> float:
        """How wide ``text`` is drawn, in pixels."""
        return sum(font.getlength(run) for font, run in self.runs(text))

    def draw(
        self, draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: tuple
    ) -> None:
        """Draw ``text`` at ``xy``, each run with its font."""
        x, y = xy
        for font, run in self.runs(text):
            draw.text((x, y), run, font=font, fill=fill)
            x += font.getlength(run)


@functools.cache
def font_chain(size: int) -> FontChain:
    """Pillow's bundled font at ``size``, then every system font that opens."""
    fonts: list[ImageFont.FreeTypeFont | ImageFont.ImageFont] = [ImageFont.load_default(size=size)]
    for path in system_fonts():
        try:
            fonts.append(ImageFont.truetype(str(path), size))
        except OSError:  # not a font Pillow reads: the next one
            continue
    return FontChain(fonts)

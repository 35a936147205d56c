"""The placeholder draws text in any script the machine has a font for (.ci/run installs
Debian's fonts-droid-fallback, a CJK font, as a user's distribution would have one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from imagen.backends import drawing, fonts
from imagen.backends.fonts import FontChain, font_chain, system_fonts


def _drawn(chain: FontChain, text: str) -> bytes:
    image = Image.new("L", (400, 60))
    chain.draw(ImageDraw.Draw(image), (4, 4), text, fill=255)
    return image.tobytes()


def test_the_bundled_font_alone_draws_boxes_for_japanese():
    bundled = FontChain([ImageFont.load_default(size=24)])
    assert _drawn(bundled, "日本語") == _drawn(bundled, "中文字")  # the same three boxes
    assert _drawn(bundled, "é") == _drawn(bundled, "ñ")  # a box for accented letters too


def test_the_chain_draws_each_character_with_a_font_that_has_it():
    assert any("Droid" in path.name or "CJK" in path.name for path in system_fonts())
    chain = font_chain(24)
    bundled = FontChain([ImageFont.load_default(size=24)])
    assert _drawn(chain, "日本語") != _drawn(chain, "中文字")
    assert _drawn(chain, "日本語") != _drawn(bundled, "日本語")
    # Latin stays the bundled font's, the same on every machine.
    assert _drawn(chain, "a lighthouse at dusk") == _drawn(bundled, "a lighthouse at dusk")
    runs = [run for _, run in chain.runs("café 日本語")]
    assert runs == ["caf", "é ", "日本語"]  # the bundled font has no é either
    assert chain.getlength("日本語") > 0


def test_a_font_of_the_users_choice_comes_first(monkeypatch):
    dejavu = next(path for path in system_fonts() if path.name == "DejaVuSans.ttf")
    monkeypatch.setenv("IMAGEN_FONT", str(dejavu))
    system_fonts.cache_clear()
    try:
        assert system_fonts()[0] == dejavu
    finally:
        system_fonts.cache_clear()


def test_generate_draws_the_prompt_in_its_own_script(home, monkeypatch):
    proc = home.run("generate", "café 日本語", "--seed", "3", "--size", "512x256", check=True)
    with Image.open(proc.stdout.strip()) as made:
        pixels = made.convert("RGB").tobytes()
    assert pixels == drawing.picture("café 日本語", 3, 512, 256).tobytes()  # as drawn here
    monkeypatch.setattr(
        drawing, "font_chain", lambda size: FontChain([ImageFont.load_default(size=size)])
    )
    boxes = drawing.picture("café 日本語", 3, 512, 256).tobytes()
    assert pixels != boxes  # not the boxes it drew before


def test_help_stays_free_of_fonts():
    probe = "import sys; import imagen.cli; print('PIL' in sys.modules or 'imagen.backends.fonts' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert fonts.KNOWN  # the list of fonts looked for is not empty
    assert Path(fonts.__file__).exists()

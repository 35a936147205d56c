"""``imagen open`` and ``generate --open`` through the OS's opener; images drawn inline."""

from __future__ import annotations

import base64
import io
import os
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

from imagen.inline import encode
from imagen.opener import OpenError, open_with_system


@pytest.fixture
def opener(home, tmp_path):
    """A recording ``xdg-open`` (and macOS ``open``) first on PATH: each call's argv, a line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "opened.txt"
    for name in ("xdg-open", "open"):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nprintf "%s %s\\n" "$(basename "$0")" "$*" >> {calls}\n')
        script.chmod(0o755)
    home.env["PATH"] = f"{bin_dir}{os.pathsep}{home.env['PATH']}"
    return calls


def _opened(calls: Path) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


def test_open_last_an_id_or_a_file(home, opener):
    first = home.run("generate", "first", "--size", "32x32", check=True).stdout.strip()
    last = home.run("generate", "second", "--size", "32x32", check=True).stdout.strip()
    home.run("open", check=True)  # last by default
    home.run("open", "1", check=True)
    home.run("open", first, check=True)
    assert _opened(opener) == [
        f"xdg-open {Path(home.cwd, last).resolve()}",
        f"xdg-open {Path(home.cwd, first).resolve()}",
        f"xdg-open {first}",
    ]
    assert home.run("open", "last", "--print", check=True).stdout.strip() == str(
        Path(home.cwd, last).resolve()
    )


def test_generate_open_opens_each_image(home, opener):
    proc = home.run("generate", "pair", "-n", "2", "--size", "32x32", "--open", check=True)
    assert _opened(opener) == [f"xdg-open {path}" for path in proc.stdout.split()]


def test_what_cannot_be_opened_says_why(home, opener, tmp_path):
    proc = home.run("open")
    assert (proc.returncode, proc.stderr) == (
        2,
        "imagen: no image in the history yet (imagen generate makes one)\n",
    )
    home.run("generate", "x", "--size", "32x32", check=True)
    proc = home.run("open", "99")
    assert proc.returncode == 2
    assert proc.stderr == "imagen: no image 99 in the history (imagen history lists them)\n"
    failing = tmp_path / "bin" / "xdg-open"
    failing.write_text("#!/bin/sh\necho 'no method available for opening' >&2\nexit 3\n")
    proc = home.run("open")
    assert proc.returncode == 2
    assert proc.stderr.startswith("imagen: xdg-open could not open ")
    assert proc.stderr.endswith("(exit 3): no method available for opening\n")
    home.env["PATH"] = str(tmp_path / "empty")
    proc = home.run("open")
    assert proc.returncode == 2
    assert "xdg-open is not installed" in proc.stderr


def test_a_mac_uses_open(home, opener):
    made = home.run("generate", "x", "--size", "32x32", check=True).stdout.strip()
    script = "import sys; sys.platform = 'darwin'; from imagen.cli import main; main(['open'])"
    env = {**home.env, "XDG_CONFIG_HOME": str(home.home / ".config")}
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=home.cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert _opened(opener) == [f"open {Path(home.cwd, made).resolve()}"]


def test_windows_uses_startfile(monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr(os, "startfile", started.append, raising=False)
    open_with_system(tmp_path / "a.png", platform="win32")
    assert started == [tmp_path / "a.png"]

    def refuse(path):
        raise OSError(1155, "No application is associated with the specified file")

    monkeypatch.setattr(os, "startfile", refuse, raising=False)
    with pytest.raises(OpenError, match=r"Windows could not open .*No application"):
        open_with_system(tmp_path / "a.png", platform="win32")


# -- inline ---------------------------------------------------------------------------------

OUTSIDE_TMUX = {"TMUX": "", "TERM": "xterm-256color", "TERM_PROGRAM": "", "LC_TERMINAL": ""}


def test_kitty_draws_the_png_in_chunks(home):
    code, stdout, terminal = home.run_on_terminal(
        "generate",
        "kitty",
        "--size",
        "64x48",
        "--preview",
        env={**OUTSIDE_TMUX, "KITTY_WINDOW_ID": "1"},
    )
    assert code == 0, terminal
    chunks = re.findall(rb"\x1b_G([^;]*);([A-Za-z0-9+/=]*)\x1b\\", terminal)
    assert chunks[0][0] == b"a=T,f=100,c=60,m=" + (b"1" if len(chunks) > 1 else b"0")
    assert all(head == b"m=1" for head, _ in chunks[1:-1])
    assert all(len(data) <= 4096 for _, data in chunks)
    png = base64.b64decode(b"".join(data for _, data in chunks))
    assert png == Path(stdout.strip()).read_bytes()


def test_iterm2_draws_the_file(home):
    code, stdout, terminal = home.run_on_terminal(
        "generate",
        "iterm",
        "--size",
        "32x32",
        "--preview",
        env={**OUTSIDE_TMUX, "TERM_PROGRAM": "iTerm.app"},
    )
    assert code == 0, terminal
    match = re.search(
        rb"\x1b\]1337;File=name=([^;]*);size=(\d+);inline=1;[^:]*:([^\x07]*)\x07", terminal
    )
    assert match is not None
    path = Path(stdout.strip())
    assert base64.b64decode(match[1]).decode() == path.name
    assert int(match[2]) == path.stat().st_size
    assert base64.b64decode(match[3]) == path.read_bytes()


def _decode_sixel(data: bytes) -> Image.Image:
    """An independent reader of the sixel subset imagen writes (palette, runs, bands)."""
    body = data[data.index(b"q") + 1 : data.rindex(b"\x1b\\")]
    width, height = (int(v) for v in re.match(rb'"1;1;(\d+);(\d+)', body).groups())
    image = Image.new("RGB", (width, height))
    palette: dict[int, tuple[int, int, int]] = {}
    colour, x, top = 0, 0, 0
    for token in re.finditer(
        rb"#(\d+);2;(\d+);(\d+);(\d+)|#(\d+)|!(\d+)(.)|([?-~])|(\$)|(-)", body[body.index(b"#") :]
    ):
        if token[1]:
            palette[int(token[1])] = tuple(int(int(token[i]) * 255 / 100 + 0.5) for i in (2, 3, 4))
        elif token[5]:
            colour = int(token[5])
        elif token[6] or token[8]:
            count, char = (int(token[6]), token[7][0]) if token[6] else (1, token[8][0])
            for _ in range(count):
                for dy in range(6):
                    if (char - 63) >> dy & 1 and top + dy < height:
                        image.putpixel((x, top + dy), palette[colour])
                x += 1
        elif token[9]:
            x = 0
        elif token[10]:
            x, top = 0, top + 6
    return image


def test_sixel_draws_what_the_image_holds(home):
    code, stdout, terminal = home.run_on_terminal(
        "generate", "sixel", "--size", "40x30", "--preview", env={**OUTSIDE_TMUX, "TERM": "foot"}
    )
    assert code == 0, terminal
    start = terminal.index(b"\x1bP")
    drawn = _decode_sixel(terminal[start : terminal.index(b"\x1b\\", start) + 2])
    with Image.open(stdout.strip()) as original:
        expected = (
            original.convert("RGB").quantize(colors=255, dither=Image.Dither.NONE).convert("RGB")
        )
    assert drawn.size == expected.size
    worst = max(
        max(abs(a - b) for a, b in zip(p, q, strict=True))
        for p, q in zip(drawn.get_flattened_data(), expected.get_flattened_data(), strict=True)
    )
    assert worst <= 3  # the palette is sent in percent: within rounding of the original


def test_open_inline_and_a_terminal_without_images(home):
    made = home.run("generate", "x", "--size", "32x32", check=True).stdout.strip()
    code, _, terminal = home.run_on_terminal(
        "open", "--inline", env={**OUTSIDE_TMUX, "KITTY_WINDOW_ID": "7"}
    )
    assert code == 0
    assert terminal.startswith(b"\x1b_Ga=T,f=100")
    code, _, terminal = home.run_on_terminal("open", "--inline", env=OUTSIDE_TMUX)
    assert code == 2
    assert b"this terminal announces no image protocol" in terminal
    home.write_config("preview:\n  inline: sixel\n")  # the user knows better
    code, _, terminal = home.run_on_terminal("open", "--inline", env=OUTSIDE_TMUX)
    assert code == 0
    assert terminal.startswith(b"\x1bP0;1;0q")
    assert Path(made).exists()


def test_jpeg_goes_to_kitty_as_png(tmp_path):
    path = tmp_path / "a.jpg"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path, format="JPEG")
    data = encode(path, "kitty")
    payload = b"".join(re.findall(rb";([A-Za-z0-9+/=]*)\x1b\\", data))
    with Image.open(io.BytesIO(base64.b64decode(payload))) as image:
        assert image.format == "PNG"
        assert image.size == (8, 8)

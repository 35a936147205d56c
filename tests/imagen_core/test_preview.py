"""The tmux preview step, against a real tmux server on a private socket."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest


class Tmux:
    def __init__(self, socket: Path) -> None:
        self.socket = socket

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout


@pytest.fixture
def tmux(tmp_path) -> Tmux:
    assert shutil.which("tmux"), "tmux is required (.ci/run installs it)"
    server = Tmux(tmp_path / "tmux.sock")
    server("-f", "/dev/null", "new-session", "-d", "-s", "imagen-test", "-x", "100", "-y", "30")
    yield server
    subprocess.run(
        ["tmux", "-S", str(server.socket), "kill-server"], capture_output=True, check=False
    )


def _inside(home, tmux: Tmux) -> None:
    pid = tmux("display-message", "-p", "#{pid}").strip()
    home.env["TMUX"] = f"{tmux.socket},{pid},0"


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_preview_opens_a_window_named_after_each_image(home, tmux, tmp_path):
    shown = tmp_path / "shown.txt"
    home.write_config(f'preview:\n  enabled: true\n  viewer: "echo {{path}} >> {shown}"\n')
    _inside(home, tmux)
    proc = home.run("generate", "harbour lights", "-n", "2", "--size", "32x32", check=True)
    paths = [Path(line) for line in proc.stdout.splitlines()]
    assert proc.stderr == ""
    assert _wait_for(lambda: shown.exists() and len(shown.read_text().splitlines()) == 2)
    assert sorted(shown.read_text().splitlines()) == sorted(map(str, paths))
    windows = tmux("list-windows", "-a", "-F", "#{window_name}").split()
    for path in paths:
        assert path.stem in windows  # held open until Enter
    # Detached: the user's current window did not change.
    assert tmux("display-message", "-p", "#{window_index}").strip() == "0"


def test_preview_flag_overrides_config(home, tmux, tmp_path):
    shown = tmp_path / "shown.txt"
    home.write_config(f'preview:\n  viewer: "echo {{path}} > {shown}"\n  hold: false\n')
    _inside(home, tmux)
    home.run("generate", "x", "--size", "32x32", check=True)
    time.sleep(0.3)
    assert not shown.exists()
    proc = home.run("generate", "x", "--size", "32x32", "--preview", check=True)
    assert _wait_for(shown.exists)
    assert _wait_for(lambda: shown.read_text().strip() == proc.stdout.strip())


def test_outside_tmux_says_so_once_and_succeeds(home):
    proc = home.run("generate", "x", "-n", "2", "--size", "32x32", "--preview")
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == [
        (
            "imagen: preview: not inside tmux, and this terminal draws no images (kitty, "
            "iTerm2, sixel: set preview.inline if it does); no preview shown"
        )
    ]
    assert len(proc.stdout.splitlines()) == 2


def test_no_viewer_found_says_so_and_succeeds(home, tmux, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tmux").symlink_to(shutil.which("tmux"))
    home.env["PATH"] = str(bin_dir)  # no tmux-img, timg or chafa here
    _inside(home, tmux)
    proc = home.run("generate", "x", "--size", "32x32", "--preview")
    assert proc.returncode == 0
    assert proc.stderr.strip() == (
        "imagen: preview: no viewer found (install one of tmux-img, timg, chafa, or set preview.viewer)"
    )


def test_default_viewer_is_the_first_found(home, tmux, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tmux").symlink_to(shutil.which("tmux"))
    marker = tmp_path / "chafa-ran"
    (bin_dir / "chafa").write_text(f'#!/bin/sh\necho "$@" > {marker}\n')
    (bin_dir / "chafa").chmod(0o755)
    home.env["PATH"] = str(bin_dir)
    _inside(home, tmux)
    proc = home.run("generate", "x", "--size", "32x32", "--preview", check=True)
    assert _wait_for(marker.exists)
    assert _wait_for(lambda: marker.read_text().strip() == proc.stdout.strip())

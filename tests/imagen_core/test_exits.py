"""Exit codes and usage errors are what docs/cli.md says, and a closed stdout is no error."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import imagen
import imagen.errors
from imagen.cli import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]


def _documented_codes() -> dict[int, str]:
    text = (ROOT / "docs" / "cli.md").read_text()
    return {
        int(code): meaning
        for code, meaning in re.findall(r"^\| (\d+) \| (.+) \|$", text, re.MULTILINE)
    }


def test_the_pages_table_is_the_codes_table():
    assert _documented_codes() == EXIT_CODES


def test_every_error_class_exits_with_a_documented_code():
    errors = [
        cls
        for cls in vars(imagen.errors).values()
        if inspect.isclass(cls) and issubclass(cls, imagen.ImagenError)
    ]
    assert len(errors) >= 13
    for cls in errors:
        assert cls.exit_code in EXIT_CODES, cls
    assert imagen.CredentialRejectedError.exit_code == 3  # a credential, as the page says
    assert issubclass(imagen.CredentialRejectedError, imagen.PermanentBackendError)  # no retry


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["generate", "x", "--opt", "delay=abc"], 2, "option delay must be a number"),
        (["generate", "x", "--size", "100000x100000"], 2, "width 100000 is out of bounds"),
        (["generate", "x", "--size", "big"], 2, "size must look like 1024x768"),
        (["generate", "x", "--opt", "fail=config"], 3, ""),
        (["generate", "x", "--opt", "fail=permanent"], 4, ""),
        (["generate", "x", "-b", "nosuch"], 3, 'no backend instance "nosuch"'),
        (["generate", "x", "--style", "nosuch"], 2, 'unknown style "nosuch"'),
    ],
)
def test_each_failure_exits_with_its_documented_code(home, args, code, says):
    proc = home.run(*args)
    assert proc.returncode == code, proc.stderr
    assert code in EXIT_CODES
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1, proc.stderr
    assert line.startswith("imagen: ")
    assert says in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["generate", "--nosuch"], "imagen: No such option '--nosuch' (imagen generate --help)"),
        (["--nosuch"], "imagen: No such option '--nosuch' (imagen --help)"),
        (["nosuch"], "imagen: No such command 'nosuch' (imagen --help)"),
        (
            ["generate", "x", "--steps", "0"],
            (
                "imagen: Invalid value for '--steps': 0 is not in the range x>=1 "
                "(imagen generate --help)"
            ),
        ),
        (["config", "path", "extra"], "imagen: Got unexpected extra argument (extra) "),
        (
            ["generate"],
            "imagen: give a PROMPT, or --from IMAGE to replay one (imagen generate --help)",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(home, args, expected):
    proc = home.run(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(expected)


# -- a reader that stops early ----------------------------------------------------------------


def _piped_to_a_closed_reader(home, *args: str) -> subprocess.CompletedProcess[str]:
    """Run imagen with a stdout whose reader is gone, as ``imagen ... | head -0`` does."""
    import os

    read, write = os.pipe()
    os.close(read)  # nobody will ever read: every write fails with EPIPE
    try:
        return subprocess.run(
            [sys.executable, "-m", "imagen", *args],
            cwd=home.cwd,
            env=home.env,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)


def test_a_closed_stdout_ends_usage_and_info_quietly(home):
    made = home.run("generate", "a cat", "-q", check=True).stdout.strip()
    for args in (["usage"], ["info", made], ["config", "show"], ["backends"]):
        proc = _piped_to_a_closed_reader(home, *args)
        assert (proc.returncode, proc.stderr) == (141, ""), args


def test_a_closed_stdout_costs_generate_no_image(home):
    proc = _piped_to_a_closed_reader(home, "generate", "a fox", "-n", "50", "-q")
    assert (proc.returncode, proc.stderr) == (141, "")
    saved = sorted(home.pictures.glob("*.png"))
    assert len(saved) == 50
    assert len(list(home.pictures.glob("*.json"))) == 50  # every sidecar too
    assert not list(home.pictures.glob(".*"))  # nothing half written


def test_head_reads_the_first_line_and_imagen_ends_quietly(home):
    """The shell pipeline itself, as a user types it."""
    home.run("generate", "a cat", "-q", "-n", "3", check=True)
    script = f"{sys.executable} -m imagen generate x -n 50 -q | head -1; echo ${{PIPESTATUS[0]}}"
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=home.cwd,
        env=home.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    first, status = proc.stdout.splitlines()
    assert first.endswith(".png")
    assert status in ("0", "141")  # 0 when all 50 paths fit the pipe before head exits
    assert proc.stderr == ""
    assert len(list(home.pictures.glob("*.png"))) == 53

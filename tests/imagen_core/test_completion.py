"""``imagen completion``: the scripts, sourced in the real bash, zsh and fish (.ci/run
installs the last two)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = """
backends:
  gpu:
    type: mock
  cloudy:
    type: mock
styles:
  noir:
    suffix: ", film noir"
"""


@pytest.fixture
def shell_home(home):
    """A user whose PATH finds this ``imagen``, with two backends and a style configured."""
    home.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{home.env['PATH']}"
    home.write_config(CONFIG)
    return home


def _script(home, shell: str) -> Path:
    path = home.root / f"imagen.{shell}"
    path.write_text(home.run("completion", shell, check=True).stdout)
    return path


def _bash(home, line: str) -> list[str]:
    words = line.split(" ")
    script = _script(home, "bash")
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        '_imagen_completion imagen\nprintf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        cwd=home.cwd,
        env=home.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in proc.stdout.splitlines() if line]


def test_bash_completes_commands_flags_and_configured_names(shell_home):
    assert _bash(shell_home, "imagen gen") == ["generate"]
    assert {"history", "open", "completion"} <= set(_bash(shell_home, "imagen "))
    assert _bash(shell_home, "imagen generate --sty") == ["--style"]
    assert _bash(shell_home, "imagen generate x -b ") == ["gpu", "cloudy", "mock"]
    assert _bash(shell_home, "imagen generate x --backend c") == ["cloudy"]
    assert _bash(shell_home, "imagen generate x -s ") == ["noir"]
    assert _bash(shell_home, "imagen completion ") == ["bash", "zsh", "fish"]


def test_bash_completes_recent_image_ids(shell_home):
    shell_home.run("generate", "a pear", "--size", "16x16", check=True)
    shell_home.run("generate", "a plum", "--size", "16x16", check=True)
    assert _bash(shell_home, "imagen open ") == ["last", "2", "1"]
    assert _bash(shell_home, "imagen open l") == ["last"]


def test_the_completion_help_says_how_to_install(home):
    text = home.run("completion", "--help", check=True).stdout
    assert "imagen completion bash > ~/.local/share/bash-completion/completions/imagen" in text
    proc = home.run("completion", "tcsh")
    assert proc.returncode == 2


def test_zsh_script_sources_and_completes(shell_home):
    script = _script(shell_home, "zsh")
    # The script's own function, run with zsh's completion builtins standing in as printers:
    # what zsh would offer, without a terminal to type on.
    program = f"""
compdef() {{ print -r -- "compdef $*" }}
_describe() {{ print -rl -- "${{(@P)3}}" }}
compadd() {{ print -rl -- "${{(@P)${{@[-1]}}}}" }}
source {script}
words=(imagen generate x -b '') CURRENT=5 _imagen_completion
words=(imagen gen) CURRENT=2 _imagen_completion
"""
    proc = subprocess.run(
        ["zsh", "-f", "-c", program],
        cwd=shell_home.cwd,
        env=shell_home.env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = proc.stdout.splitlines()
    assert lines[0] == "compdef _imagen_completion imagen"
    assert "gpu:mock" in lines
    assert "cloudy:mock" in lines
    assert any(line.startswith("generate:") for line in lines)


def test_fish_completes_through_its_own_engine(shell_home):
    script = _script(shell_home, "fish")
    program = f"source {script}; complete -C'imagen gen'; complete -C'imagen generate x -b '"
    proc = subprocess.run(
        ["fish", "--no-config", "-c", program],
        cwd=shell_home.cwd,
        env=shell_home.env,
        capture_output=True,
        text=True,
        check=True,
    )
    offered = [line.split("\t")[0] for line in proc.stdout.splitlines()]
    assert offered[0] == "generate"
    assert {"gpu", "cloudy"} <= set(offered)

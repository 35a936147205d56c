"""Fixtures shared by every package's tests."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import imagen.cli
from imagen import plugins, registry

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Home:
    """An isolated user: its home, working directory and environment."""

    root: Path
    home: Path
    cwd: Path
    env: dict[str, str]

    @property
    def pictures(self) -> Path:
        return self.home / "Pictures" / "imagen"

    def write_config(self, text: str, name: str = "imagen.yaml") -> Path:
        path = self.cwd / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    def run(self, *args: str, check: bool = False, **kwargs) -> subprocess.CompletedProcess[str]:
        """Run the real ``imagen`` console script in a subprocess."""
        proc = subprocess.run(
            [sys.executable, "-m", "imagen", *args],
            check=False,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            **kwargs,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"imagen {args} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def run_on_terminal(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        typed: str | None = None,
    ) -> tuple[int, str, bytes]:
        """Run ``imagen`` with stderr on a pseudo-terminal, as in an interactive shell.

        :param stdin: text piped to standard input (not a terminal then).
        :param typed: text typed on the terminal, which is then standard input too.
        :return: the exit code, stdout (a pipe) and every byte written to the terminal.
        """
        main, secondary = pty.openpty()
        if typed is not None:
            given_stdin: int = secondary
        else:
            given_stdin = subprocess.PIPE if stdin is not None else subprocess.DEVNULL
        proc = subprocess.Popen(
            [sys.executable, "-m", "imagen", *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            stdin=given_stdin,
            stdout=subprocess.PIPE,
            stderr=secondary,
        )
        os.close(secondary)
        if typed is not None:
            os.write(main, typed.encode())  # the terminal keeps it until imagen reads it
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        seen = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal's other end is closed: the process is done
                break
            if not chunk:
                break
            seen += chunk
        os.close(main)
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        proc.stdout.close()
        return proc.wait(timeout=120), stdout, seen


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Usage records and the embedded database never land in the real user data directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """A fresh HOME and working directory, with no imagen config anywhere."""
    user = tmp_path / "home"
    cwd = tmp_path / "work"
    user.mkdir()
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEN_", "TMUX"))}
    env.update(
        HOME=str(user),
        XDG_CONFIG_HOME=str(user / ".config"),
        XDG_DATA_HOME=str(user / ".local" / "share"),
        PYTHONUNBUFFERED="1",
    )
    # Only imagen-core's own plugins, whatever else the workspace installs; a test that
    # wants an adapter's plugin names it here.
    env["IMAGEN_LOAD_PLUGINS"] = ""
    for key in [k for k in os.environ if k.startswith(("IMAGEN_", "TMUX"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", env["XDG_DATA_HOME"])
    monkeypatch.chdir(cwd)
    return Home(tmp_path, user, cwd, env)


@pytest.fixture
def cli(home: Home) -> callable:
    """Invoke the CLI in-process (fast) with click's runner; returns the click Result."""
    runner = CliRunner()
    group = imagen.cli.build()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(group, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def register_plugin() -> Iterator[callable]:
    """Register plugin objects for one test; unregister them after."""
    manager = plugins.get_plugin_manager()
    names = []

    def register(plugin: object, name: str) -> None:
        manager.register(plugin, name=name)
        names.append(name)
        registry.reset()

    yield register
    for name in names:
        manager.unregister(name=name)
    registry.reset()


pytest_plugins = ["pytester"]

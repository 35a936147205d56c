"""Opening an image the way the desktop does: ``xdg-open``, macOS's ``open``, Windows' default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from imagen.errors import ImagenError

__all__ = ["OpenError", "open_with_system", "opener_command"]

_WAIT_S = 5.0  # an opener that returns in this time with a failure is reported


class OpenError(ImagenError):
    """The system could not open a file (no opener, no desktop, no application for it)."""

    exit_code = 2  # nothing here can open it: as an impossible request


def opener_command(path: Path, platform: str | None = None) -> list[str] | None:
    """The command that opens ``path`` on ``platform``; None where the OS opens it itself."""
    platform = platform or sys.platform
    if platform == "win32":
        return None  # os.startfile
    if platform == "darwin":
        return ["open", str(path)]
    return ["xdg-open", str(path)]


def open_with_system(path: Path, platform: str | None = None) -> None:
    """Open ``path`` in the user's default application for it, without waiting for it.

    :raises OpenError: when there is no opener, or it says at once that it failed.
    """
    argv = opener_command(path, platform)
    if argv is None:
        try:
            os.startfile(path)  # type: ignore[attr-defined]
        except OSError as exc:
            raise OpenError(f"Windows could not open {path}: {exc.strerror or exc}") from exc
        return
    try:
        # Its own session: a viewer it starts outlives imagen, and Ctrl-C here is not its.
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise OpenError(
            f"cannot open {path}: {argv[0]} is not installed (on Linux it comes with xdg-utils)"
        ) from None
    try:
        _, stderr = process.communicate(timeout=_WAIT_S)
    except subprocess.TimeoutExpired:
        return  # still running: it is showing the file
    if process.returncode != 0:
        reason = stderr.decode(errors="replace").strip().splitlines()
        detail = f": {reason[-1]}" if reason else ""
        raise OpenError(f"{argv[0]} could not open {path} (exit {process.returncode}){detail}")

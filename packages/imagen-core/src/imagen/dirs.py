r"""imagen's per-user directories: XDG on Linux, each platform's own place elsewhere.

An ``XDG_*_HOME`` variable that is set wins on every platform (a macOS user who keeps
dotfiles in ``~/.config`` sets ``XDG_CONFIG_HOME``). Without one:

- Linux and other Unixes: ``~/.config/imagen`` (config), ``~/.local/share/imagen``
  (data), ``~/.cache/imagen`` (cache);
- macOS: ``~/Library/Application Support/imagen`` (config and data),
  ``~/Library/Caches/imagen`` (cache);
- Windows: ``%APPDATA%\imagen`` (config), ``%LOCALAPPDATA%\imagen`` (data),
  ``%LOCALAPPDATA%\imagen\Cache`` (cache).

On Windows the config roams with the user's profile; data (usage records, the database,
the history of images) and the cache stay on the machine.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["cache_dir", "config_dir", "data_dir", "expand_path"]

_APP = "imagen"


def _home(environ: Mapping[str, str]) -> str:
    return environ.get("HOME") or os.path.expanduser("~")


def _user_dir(variable: str, kind: str, environ: Mapping[str, str], platform: str | None) -> Path:
    if environ.get(variable):
        return Path(environ[variable]) / _APP
    platform = platform or sys.platform
    home = _home(environ)
    if platform == "darwin":
        library = os.path.join(home, "Library")
        base = "Caches" if kind == "cache" else "Application Support"
        return Path(library, base, _APP)
    if platform == "win32":
        home = environ.get("USERPROFILE") or home
        roaming = environ.get("APPDATA") or os.path.join(home, "AppData", "Roaming")
        local = environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        if kind == "config":
            return Path(roaming, _APP)
        return Path(local, _APP, "Cache") if kind == "cache" else Path(local, _APP)
    default = {"config": (".config",), "data": (".local", "share"), "cache": (".cache",)}[kind]
    return Path(home, *default, _APP)


def config_dir(environ: Mapping[str, str] = os.environ, *, platform: str | None = None) -> Path:
    """Where the user's ``imagen.yaml`` lives (``~/.config/imagen`` on Linux).

    :param platform: a ``sys.platform`` value, for tests; this machine's by default.
    """
    return _user_dir("XDG_CONFIG_HOME", "config", environ, platform)


def data_dir(environ: Mapping[str, str] = os.environ, *, platform: str | None = None) -> Path:
    """Usage records, the history index, the database (``~/.local/share/imagen`` on Linux)."""
    return _user_dir("XDG_DATA_HOME", "data", environ, platform)


def cache_dir(environ: Mapping[str, str] = os.environ, *, platform: str | None = None) -> Path:
    """What can be made again if lost (``~/.cache/imagen`` on Linux)."""
    return _user_dir("XDG_CACHE_HOME", "cache", environ, platform)


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def expand_path(text: str, environ: Mapping[str, str] = os.environ) -> Path:
    """Expand ``~`` and ``$VAR`` / ``${VAR}`` in ``text``; an unset variable is an error.

    :raises ValueError: naming the variable that is not set.
    """

    def variable(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in environ:
            raise ValueError(f"environment variable {name} is not set")
        return environ[name]

    expanded = _VAR.sub(variable, text)
    if expanded.startswith("~"):
        home = environ.get("HOME") or os.path.expanduser("~")
        expanded = (
            home + expanded[1:] if expanded[:2] in ("~", "~/") else os.path.expanduser(expanded)
        )
    return Path(expanded)

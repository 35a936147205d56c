"""imagen's per-user directories, after the XDG base directory specification."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

__all__ = ["cache_dir", "config_dir", "data_dir", "expand_path"]


def _user_dir(variable: str, default: tuple[str, ...], environ: Mapping[str, str]) -> Path:
    base = environ.get(variable) or os.path.join(os.path.expanduser("~"), *default)
    return Path(base) / "imagen"


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CONFIG_HOME/imagen`` (``~/.config/imagen``): the user's ``imagen.yaml``."""
    return _user_dir("XDG_CONFIG_HOME", (".config",), environ)


def data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_DATA_HOME/imagen`` (``~/.local/share/imagen``): usage records, the database."""
    return _user_dir("XDG_DATA_HOME", (".local", "share"), environ)


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CACHE_HOME/imagen`` (``~/.cache/imagen``): what can be made again if lost."""
    return _user_dir("XDG_CACHE_HOME", (".cache",), environ)


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

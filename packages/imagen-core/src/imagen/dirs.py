"""imagen's per-user directories, after the XDG base directory specification."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["cache_dir", "config_dir", "data_dir"]


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

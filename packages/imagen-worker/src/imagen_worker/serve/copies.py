"""Copies the server makes of an image file (thumbnails, other formats), kept per source file.

Each source file's copies share one folder of the cache, named from the file's path: a copy
is found again without a database lookup, a changed file (another mtime or size) gets new
copies, and deleting an image forgets every copy made of it at once.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

__all__ = ["copy_path", "forget_copies"]


def _folder(cache: Path, source: Path) -> Path:
    digest = hashlib.sha256(str(source).encode()).hexdigest()
    return cache / digest[:2] / digest[:32]


def copy_path(cache: Path, source: Path, variant: str, suffix: str) -> Path:
    """Where the ``variant`` copy of ``source`` (as it is now) is kept, ending in ``suffix``."""
    stat = source.stat()
    key = hashlib.sha256(f"{stat.st_mtime_ns}\0{stat.st_size}\0{variant}".encode()).hexdigest()
    return _folder(cache, source) / f"{key[:32]}.{suffix}"


def forget_copies(cache: Path, source: Path) -> None:
    """Delete every copy made of ``source`` (there may be none)."""
    shutil.rmtree(_folder(cache, source), ignore_errors=True)

"""Input images on the command line: ``--image``, ``--reference``, ``--mask``, ``--strength``.

Each is checked (:func:`imagen.inputs.load_input`) before any backend is built; ``-`` reads
one from standard input (spooled to a temporary file, removed when the command ends).
``--from`` finds the inputs of the image it replays: at the path they were given as,
else by their SHA-256 among the files of the output directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from imagen.inputs import InputImage

__all__ = ["input_options", "loaded_inputs", "recorded_inputs"]

_MAX_SEARCHED = 20_000  # files of the output directory looked at for a recorded input


def input_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the input-image options to a command."""
    for option in reversed(
        [
            click.option(
                "--image",
                "images",
                multiple=True,
                metavar="IMG",
                help="An image to edit or start from, repeatable ('-': standard input).",
            ),
            click.option(
                "--reference",
                "references",
                multiple=True,
                metavar="IMG",
                help="A reference image (a subject or style to follow), repeatable.",
            ),
            click.option(
                "--mask",
                metavar="IMG",
                help="Where --image may change: white (or transparent) is repainted.",
            ),
            click.option(
                "--strength",
                type=click.FloatRange(0, 1),
                help="Image-to-image: 0 keeps the input, 1 ignores it (the backend's default).",
            ),
        ]
    ):
        command = option(command)
    return command


@contextlib.contextmanager
def loaded_inputs(
    images: Sequence[str], references: Sequence[str], mask: str | None
) -> Iterator[list[InputImage]]:
    """The inputs the options name, checked; standard input's copy removed at the end."""
    from imagen.inputs import load_input, spool

    given = [("image", text) for text in images]
    given += [("reference", text) for text in references]
    if mask is not None:
        given.append(("mask", mask))
    if sum(1 for _, text in given if text == "-") > 1:
        raise click.UsageError("only one input image can come from standard input ('-')")
    spooled: list[Path] = []
    try:
        loaded = []
        for role, text in given:
            if text == "-":
                path = spool(sys.stdin.buffer)
                spooled.append(path)
                loaded.append(load_input(path, role, name="-"))
            else:
                path = Path(text).expanduser()
                loaded.append(load_input(path, role, name=text, origin=_absolute(path)))
        yield loaded
    finally:
        for path in spooled:
            path.unlink(missing_ok=True)


def recorded_inputs(records: Sequence[Any], search: Path) -> list[InputImage]:
    """The inputs a replayed image was made from, found again.

    Each at its recorded path when the file there still has its hash, else by its hash
    among the files in ``search`` (the output directory): an image imagen made and then
    edited is found there.

    :raises RequestError: naming every input that could not be found, and how to give it.
    """
    from imagen.errors import RequestError
    from imagen.inputs import INPUT_ROLES, load_input

    found, missing, index = [], [], None
    for record in records:
        if not isinstance(record, dict) or record.get("role") not in INPUT_ROLES:
            continue
        sha = str(record.get("sha256") or "")
        name = str(record.get("name") or "an input")
        path = Path(str(record["path"])) if record.get("path") else None
        if path is None or not path.is_file() or _sha256(path) != sha:
            if index is None:
                index = _by_size(search)
            path = next((p for p in index.get(record.get("size"), []) if _sha256(p) == sha), None)
        if path is None:
            missing.append(f"{name} ({record['role']}, sha256 {sha[:12]}…)")
            continue
        found.append(load_input(path, record["role"], name=name, origin=_absolute(path)))
    if missing:
        raise RequestError(
            f"--from: cannot find {', '.join(missing)} at its recorded path or in {search}; "
            "give the inputs again with --image/--reference/--mask"
        )
    return found


def _by_size(directory: Path) -> dict[Any, list[Path]]:
    """The files under ``directory`` by size, so that only same-size files get hashed."""
    sizes: dict[Any, list[Path]] = {}
    if not directory.is_dir():
        return sizes
    for n, path in enumerate(directory.rglob("*")):
        if n >= _MAX_SEARCHED:
            break
        with contextlib.suppress(OSError):
            if path.is_file() and path.suffix != ".json":
                sizes.setdefault(path.stat().st_size, []).append(path)
    return sizes


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
    except OSError:
        return ""
    return digest.hexdigest()


def _absolute(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path.absolute())

"""``imagen history`` and ``imagen open``: every image made, found again and shown."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from imagen.cli import State, fail
from imagen.cli.completion import complete_backend, complete_image
from imagen.cli.usage import _Moment

if TYPE_CHECKING:
    from imagen.history.entry import Entry


@click.command()
@click.argument("text", nargs=-1)
@click.option("-b", "--backend", shell_complete=complete_backend, help="Only this backend's.")
@click.option("--since", type=_Moment(), help="Made at or after (2026-11-01, 7d, 12h).")
@click.option("--until", type=_Moment(), help="Made before.")
@click.option(
    "-n", "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most."
)
@click.option("--all", "everything", is_flag=True, help="No limit.")
@click.option("--oldest-first", is_flag=True, help="Oldest first (default: newest first).")
@click.option("-p", "--paths", is_flag=True, help="Print only the paths, one per line.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as a JSON list.")
@click.pass_obj
def history(
    state: State,
    text: tuple[str, ...],
    backend: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    everything: bool,
    oldest_first: bool,
    paths: bool,
    as_json: bool,
) -> None:
    """List the images made here, newest first; TEXT searches their prompts.

    Every word of TEXT must appear in the prompt (as any part of a word: "light" finds
    "lighthouse"), in any case. Images from imagen generate, the worker and imagen serve
    are all here. Show one with: imagen open ID.
    """
    from imagen.history.index import HistoryIndex

    index = HistoryIndex.default(state.config())
    entries = index.search(
        " ".join(text) or None,
        backend=backend,
        since=since,
        until=until,
        limit=None if everything else limit,
        oldest_first=oldest_first,
    )
    if as_json:
        click.echo(json.dumps([entry.to_json() for entry in entries], indent=2))
        return
    if paths:
        for entry in entries:
            click.echo(entry.path)
        return
    if not entries:
        click.echo(
            "No images found." if text or backend or since or until else "No images yet.", err=True
        )
        return
    _table(entries)


def _table(entries: list[Entry]) -> None:
    import shutil

    width = shutil.get_terminal_size((100, 24)).columns
    ids = max(len("ID"), *(len(str(e.id)) for e in entries))
    backends = max(len("BACKEND"), *(len(e.backend) for e in entries))
    head = f"{'ID':>{ids}}  {'WHEN':<16}  {'BACKEND':<{backends}}  {'SIZE':<9}  PROMPT"
    click.echo(head)
    room = max(20, width - len(head) + len("PROMPT"))
    for entry in entries:
        when = entry.created.astimezone().strftime("%Y-%m-%d %H:%M")
        size = f"{entry.width}x{entry.height}" if entry.width and entry.height else ""
        prompt = " ".join(entry.prompt.split())
        if not os.path.exists(entry.path):
            prompt = "(deleted) " + prompt
        if len(prompt) > room:
            prompt = prompt[: room - 1] + "…"
        click.echo(
            f"{entry.id:>{ids}}  {when:<16}  {entry.backend:<{backends}}  {size:<9}  {prompt}"
        )


@click.command("open")
@click.argument("image", default="last", shell_complete=complete_image)
@click.option(
    "--inline", is_flag=True, help="Draw it in this terminal (kitty, iTerm2, sixel) instead."
)
@click.option("--print", "print_path", is_flag=True, help="Print its path; open nothing.")
@click.pass_obj
def open_(state: State, image: str, inline: bool, print_path: bool) -> None:
    """Open IMAGE (a history id, "last", or a file) in the system's image viewer.

    The viewer is what the desktop opens images with: xdg-open on Linux, open on macOS,
    the default app on Windows.
    """
    path = _resolve(state, image)
    if print_path:
        click.echo(str(path))
        return
    if inline:
        _draw(state, path)
        return
    from imagen.opener import open_with_system

    open_with_system(path)


def _resolve(state: State, image: str) -> Path:
    from imagen.history.index import HistoryIndex

    if image != "last" and not image.isdigit():
        path = Path(image)
        if not path.is_file():
            fail(f"{image}: no such file, and not an image id (imagen history lists them)", 2)
        return path
    index = HistoryIndex.default(state.config())
    if image == "last":
        found = index.search(limit=1)
        if not found:
            fail("no image in the history yet (imagen generate makes one)", 2)
        entry = found[0]
    else:
        entry = index.get(int(image))
        if entry is None:
            fail(f"no image {image} in the history (imagen history lists them)", 2)
    if not os.path.exists(entry.path):
        fail(f"image {entry.id} was at {entry.path}, which is gone", 2)
    return Path(entry.path)


def _draw(state: State, path: Path) -> None:
    from imagen.inline import encode
    from imagen.preview import inline_protocol

    protocol = inline_protocol(state.config().preview, os.environ)
    terminal = sys.stdout if sys.stdout.isatty() else sys.stderr
    if not terminal.isatty():
        fail("--inline draws on a terminal, and neither stdout nor stderr is one", 2)
    if protocol is None:
        fail(
            "this terminal announces no image protocol (kitty, iTerm2, sixel); "
            "set preview.inline if it speaks one",
            2,
        )
    terminal.flush()
    terminal.buffer.write(encode(path, protocol))
    terminal.buffer.flush()

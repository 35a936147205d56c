"""Following one job from the command line, through the database, until it ends.

``imagen jobs watch`` and ``imagen jobs submit --wait`` read the job's row as it moves. A
worker announces each change on ``imagen_progress`` as the job's *token*
(:mod:`imagen_worker.notices`); this process holds the database's progress key, so it knows
its job's token and wakes on it, and it reads the row again every second for what is not
announced (a claim, a queue that moves) or was missed. Without the key (a role that may
not read ``imagen.server_keys``) the once-a-second read alone follows the job.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
import psycopg
from psycopg.rows import dict_row

from imagen.cli import fail
from imagen.context import Progress
from imagen.errors import RequestError
from imagen_worker.fleet import NO_WORKER, fleet, queue_position
from imagen_worker.listing import plain, to_json
from imagen_worker.notices import PROGRESS_CHANNEL, read_progress_key

if TYPE_CHECKING:
    from imagen.config import Config

__all__ = ["ENDED", "ENDINGS", "exit_code", "follow", "progress_of", "watch"]

log = logging.getLogger("imagen")

ENDED = ("done", "failed", "cancelled")
_RECHECK_S = 1.0
_NO_WORKER_SHORT = "(no worker is running)"  # on the progress line, which must fit one line
_IMAGES = (
    "SELECT id, local_path, storage_location, mime_type, width, height, seed "
    "FROM imagen.images WHERE job_id = %s ORDER BY id"
)
_JOB = (
    "SELECT id, status, backend, progress, error, error_kind, image_id FROM imagen.jobs "
    "WHERE id = %s"
)
# How a job can end (its status, or a failure's error_kind) and the exit code for it: the
# code imagen generate gives the same ending (docs/cli.md). docs/worker.md's table is
# generated from this.
ENDINGS: dict[str, tuple[int, str]] = {
    "done": (0, "done (the paths of its images are printed)"),
    "request": (2, "failed: the backend refused the request (`error_kind` `request`)"),
    "config": (3, "failed: a configuration error (`config`)"),
    "backend": (4, "failed for good: the backend's error (`backend`)"),
    "lost": (4, "failed for good: its worker stopped responding on its last attempt (`lost`)"),
    "transient": (5, "failed for now, out of attempts (`transient`)"),
    "output": (7, "failed writing its images (`output`)"),
    "budget": (8, "refused by a spending cap (`budget`)"),
    "internal": (1, "failed inside imagen (`internal`)"),
    "cancelled": (130, "cancelled"),
}


def follow(
    conn: psycopg.Connection[Any],
    job_id: int,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Follow job ``job_id`` until it has ended; its last row.

    ``on_progress`` hears each change of the job's state as the progress ``imagen generate``
    shows: ``queued`` with its place in the queue, then the backend's own reports.
    ``conn`` must be in autocommit mode (notifications arrive between transactions).

    :raises RequestError: there is no such job (or it was deleted meanwhile).
    """
    token = _token(conn, job_id)
    if token is not None:
        conn.execute(f"LISTEN {PROGRESS_CHANNEL}")
    last: Progress | None = None
    told = False
    while True:
        with conn.cursor(row_factory=dict_row) as cursor:
            row = cursor.execute(_JOB, (job_id,)).fetchone()
        if row is None:
            raise RequestError(f"no job {job_id}")
        if row["status"] in ENDED:
            return dict(row)
        progress = _progress(conn, row)
        if progress.message == _NO_WORKER_SHORT and not told:  # the whole sentence, once
            told = True
            log.warning("job %s: %s", job_id, NO_WORKER)
        if progress != last and on_progress is not None:
            on_progress(progress)
        last = progress
        for note in conn.notifies(timeout=_RECHECK_S):
            if note.payload == token:
                break


def _token(conn: psycopg.Connection[Any], job_id: int) -> str | None:
    try:
        return read_progress_key(conn).token(job_id)
    except (psycopg.Error, LookupError) as exc:  # not ours to read: the timer alone, then
        log.debug("following job %s without announcements: %s", job_id, exc)
        return None


def _progress(conn: psycopg.Connection[Any], row: dict[str, Any]) -> Progress:
    if row["status"] == "pending":
        message = ""
        if fleet(conn).workers == 0:
            message = _NO_WORKER_SHORT
        elif row["error"] and row["error_kind"] == "transient":
            message = f"to be retried: {_short(row['error'])}"
        return Progress("queued", queue_position(conn, row["id"]), message=message)
    return progress_of(row)


def progress_of(row: dict[str, Any]) -> Progress:
    """The progress a running job's row reports: its backend's last report, else ``started``.

    The row is read defensively: a report that is not one (hostile or from another version)
    reads as ``started``.
    """
    state = row.get("progress")
    last = state.get("last") if isinstance(state, dict) else None
    if not isinstance(last, dict):
        return Progress("started")
    message = last.get("message")
    try:
        return Progress(
            last.get("kind"),  # type: ignore[arg-type]  (checked by Progress itself)
            _count(last.get("current")),
            _count(last.get("total")),
            _short(message) if isinstance(message, str) else "",
        )
    except (TypeError, ValueError):
        return Progress("started")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _short(text: str, limit: int = 80) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def exit_code(row: dict[str, Any]) -> int:
    """The exit code for how the job ended (:data:`ENDINGS`); a failure of no known kind, 4."""
    ending = row["status"] if row["status"] != "failed" else row.get("error_kind") or "backend"
    return ENDINGS.get(ending, ENDINGS["backend"])[0]


def watch(
    conn: psycopg.Connection[Any], job_id: int, config: Config, *, as_json: bool, quiet: bool
) -> None:
    """Follow job ``job_id`` to its end and report it as ``imagen generate`` reports a run.

    The progress line on a terminal's stderr; then the images' paths on stdout (or, with
    ``as_json``, the job and its images), and the exit code of how the job ended, with its
    error in one line. Ctrl-C stops following (exit 130); the job goes on.
    """
    from imagen.cli.progress import ProgressLine

    with conn.cursor(row_factory=dict_row) as cursor:
        first = cursor.execute("SELECT backend FROM imagen.jobs WHERE id = %s", (job_id,))
        row = first.fetchone()
    if row is None:
        raise RequestError(f"no job {job_id}")
    label = f"job {job_id} on {row['backend'] or config.default_backend}"
    progress = ProgressLine(label) if sys.stderr.isatty() and not quiet else None
    try:
        ended = follow(conn, job_id, progress)
    except KeyboardInterrupt:
        if progress is not None:
            progress.clear()
        fail(
            f"stopped watching job {job_id}; it goes on (imagen jobs cancel {job_id} stops it)", 130
        )
    if progress is not None:
        progress.clear()
    with conn.cursor(row_factory=dict_row) as cursor:
        images = cursor.execute(_IMAGES, (job_id,)).fetchall()
        whole = cursor.execute("SELECT * FROM imagen.jobs WHERE id = %s", (job_id,)).fetchone()
    code = exit_code(ended)
    if as_json:
        click.echo(to_json({**plain(whole or ended), "images": images}))
    elif code == 0:
        for image in images:
            click.echo(image["local_path"] or image["storage_location"])
    if code == 130:
        fail(f"job {job_id} was cancelled", code)
    if code:
        fail(f"job {job_id} failed: {ended['error'] or 'no reason was recorded'}", code)

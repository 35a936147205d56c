"""``imagen resume``: see a run through that an earlier ``imagen generate`` left unfinished."""

from __future__ import annotations

import json
import logging
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from imagen.cli import STEP_FAILED, State, fail, running, show_error

if TYPE_CHECKING:
    from imagen.runs import RunBook, RunRecord

log = logging.getLogger("imagen")


@click.command()
@click.argument("run_id", required=False)
@click.option("--list", "listing", is_flag=True, help="List the unfinished runs, newest first.")
@click.option("-y", "--yes", is_flag=True, help="Resume the last unfinished run without asking.")
@click.option(
    "--force", is_flag=True, help="Resume even while another imagen process follows the run."
)
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Save here instead of where the run was to save.",
)
@click.option("--preview/--no-preview", default=None, help="Open each image in a tmux window.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the saved paths; no notes.")
@click.option("-v", "--verbose", is_flag=True, help="More detail, and tracebacks on errors.")
@click.pass_obj
def resume(
    state: State,
    run_id: str | None,
    listing: bool,
    yes: bool,
    force: bool,
    output_dir: Path | None,
    preview: bool | None,
    as_json: bool,
    quiet: bool,
    verbose: bool,
) -> None:
    """Save the images of an unfinished run.

    Follows a run that `imagen generate` did not see through to its end. RUN_ID is the upstream run's id (a ComfyUI prompt id, a Replicate prediction id) as
    imagen printed it, or enough of its start to name one run. Without it, the most recent
    unfinished run is offered. The images are saved as the first command would have saved
    them: same request, seed, style, output directory and metadata. Nothing is submitted
    again; a run the upstream no longer has is reported lost (exit 4).

    imagen keeps a record of each run in flight of a backend that can re-attach (comfyui,
    replicate) until the run ends; a run is unfinished when imagen was killed, or gave up on
    an upstream that stopped answering, or could not write its images.
    """
    from imagen.runs import RunBook

    if verbose:
        state.debug = True
        log.setLevel(logging.INFO)
    if quiet:
        log.setLevel(logging.ERROR)
    book = RunBook()
    if listing:
        _list(book)
        return
    record = _choose(book, run_id, yes=yes, quiet=quiet)
    if record.followed_elsewhere() and not force:
        fail(
            f"run {record.run_id} is still followed by imagen (process {record.pid}): let it "
            "finish, or stop it first (--force resumes it all the same)",
            2,
        )
    _follow(state, book, record, output_dir, preview, as_json=as_json, quiet=quiet)


def _list(book: RunBook) -> None:
    records = book.records()
    for problem in book.problems:
        log.warning("cannot read a run record: %s", problem)
    for record in records:
        when = record.started.astimezone().strftime("%Y-%m-%d %H:%M")
        state = f"  (followed by process {record.pid})" if record.followed_elsewhere() else ""
        prompt = _short(record.request.prompt)
        click.echo(f"{record.run_id}  {record.backend}  {when}  {prompt}{state}")


def _choose(book: RunBook, run_id: str | None, *, yes: bool, quiet: bool) -> RunRecord:
    from imagen.runs import RunRecordError

    if run_id is not None:
        try:
            record = book.find(run_id)
        except RunRecordError as exc:
            fail(str(exc), 2)
        if record is None:
            fail(
                f"no record of an unfinished run {run_id!r} (imagen resume --list shows the "
                "runs imagen generate left unfinished here)",
                2,
            )
        return record
    records = book.records()
    for problem in book.problems:
        log.warning("cannot read a run record: %s", problem)
    waiting = [record for record in records if not record.followed_elsewhere()]
    if not waiting:
        busy = len(records)
        fail("no unfinished run to resume" + (f" ({busy} still followed)" if busy else ""), 2)
    record = waiting[0]
    described = (
        f'run {record.run_id} (backend "{record.backend}", "{_short(record.request.prompt)}", '
        f"started {_ago(record.started)})"
    )
    if not yes and sys.stdin.isatty():
        if not click.confirm(f"Resume {described}?", default=True, err=True):
            raise click.exceptions.Exit(0)
    elif not quiet:
        click.echo(f"imagen: resuming {described}", err=True)
    return record


def _follow(
    state: State,
    book: RunBook,
    record: RunRecord,
    output_dir: Path | None,
    preview: bool | None,
    *,
    as_json: bool,
    quiet: bool,
) -> None:
    from imagen.errors import RunLostError
    from imagen.pipeline import BackendPool

    if state.config_path is None and record.config is not None:
        if Path(record.config).is_file():
            state.config_path = Path(record.config)  # the file the run was started with
        else:
            log.warning("%s, which run %s was started with, is gone", record.config, record.run_id)
    config = state.config()
    if record.backend not in config.backends:
        where = config.file or "the built-in defaults"
        fail(
            f'run {record.run_id} was started on backend "{record.backend}", which {where} '
            "does not configure",
            3,
        )
    if config.backends[record.backend].type != record.backend_type:
        fail(
            f'backend "{record.backend}" is of type {config.backends[record.backend].type} '
            f"now; run {record.run_id} was started on a {record.backend_type} backend",
            3,
        )
    pool = BackendPool(config)
    try:
        instance = pool.get(record.backend)
        if not instance.supports_resume:
            fail(f"backend type {record.backend_type} cannot re-attach to a run", 2)
        record = record.following()
        tracker = running.RunTracker(book, record)
        tracker.on_run_id(record.run_id)  # followed by this process now
        try:
            outcome = running.run(
                config,
                pool,
                tracker,
                label=record.backend,
                quiet=quiet,
                request=record.request,
                styled=record.styled,
                backend=record.backend,
                resume=record.run_id,
                started=record.started,
                output_dir=Path(output_dir or record.output_dir),
                preview=preview if preview is not None else record.preview,
            )
        except RunLostError as exc:
            show_error(exc, hint=f"nothing was saved; to make it anew: {_again(record)}")
    finally:
        pool.close()
    running.report(outcome, record.backend, as_json, quiet, set(record.explicit))
    if outcome.step_failures:
        raise click.exceptions.Exit(STEP_FAILED)


def _again(record: RunRecord) -> str:
    """The ``imagen generate`` command that makes ``record``'s request anew."""
    request = record.request
    words = ["imagen", "generate", request.prompt, "--backend", record.backend]
    for flag, value in (
        ("--negative", request.negative_prompt or None),
        ("--style", request.style),
        ("--width", request.width),
        ("--height", request.height),
        ("--steps", request.steps),
        ("--seed", request.seed),
        ("-n", request.count if request.count != 1 else None),
    ):
        if value is not None:
            words += [flag, str(value)]
    for key, value in request.options.items():
        words += ["--opt", f"{key}={json.dumps(value)}"]
    return shlex.join(words)


def _short(prompt: str, most: int = 40) -> str:
    flat = " ".join(prompt.split())
    return flat if len(flat) <= most else flat[: most - 1] + "…"


def _ago(when: datetime) -> str:
    seconds = max(0, int((datetime.now(when.tzinfo) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"

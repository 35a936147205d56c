"""``imagen worker`` and ``imagen jobs``: run the queue and manage its jobs.

This module is imported at every imagen start (the plugin adds its commands), so it imports
click and imagen's light modules only; psycopg comes inside the commands.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from typing import Any

import click

from imagen.cli import State, fail
from imagen.errors import RequestError
from imagen_worker import queries
from imagen_worker.options import concurrency_option, database_option, grace_option

__all__ = ["jobs", "worker"]

_COLUMNS = (
    "id",
    "status",
    "owner",
    "prompt",
    "backend",
    "count",
    "attempts",
    "max_attempts",
    "error",
    "error_kind",
    "upstream_run_id",
    "image_id",
    "created_at",
    "started_at",
    "finished_at",
)


def _connect(state: State, url: str | None) -> Any:
    """A connection to the queue's database (the embedded one migrated on first use)."""
    from imagen_worker.database import connect, ready_database

    return connect(ready_database(url, state.config(), quiet=True))


@click.command()
@database_option
@concurrency_option(
    "Jobs run at once by this process.", default=None, show_default="worker.concurrency, 1"
)
@grace_option
@click.option(
    "--poll",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Safety poll interval, for missed notifications.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds a claimed job is held without a heartbeat before others take it back.",
)
@click.pass_obj
def worker(
    state: State,
    database_url: str | None,
    concurrency: int | None,
    grace: float,
    poll: float,
    lease: float,
) -> None:
    """Run jobs from the imagen.jobs queue until SIGTERM or Ctrl-C (then exit 0)."""
    from imagen_worker.audit import warn_at_start
    from imagen_worker.daemon import Worker, WorkerSettings
    from imagen_worker.database import ready_database

    logging.getLogger("imagen").setLevel(logging.DEBUG if state.debug else logging.INFO)
    config = state.config()
    concurrency = concurrency or config.section("worker")["concurrency"]
    settings = WorkerSettings(concurrency=concurrency, poll_s=poll, lease_s=lease, grace_s=grace)
    daemon = Worker(config, ready_database(database_url, config), settings)
    warn_at_start(daemon.url, config)
    run_until_stopped(daemon)


def run_until_stopped(daemon: Any) -> None:
    """Run ``daemon`` in this thread until SIGTERM, SIGINT or SIGHUP; a second one hurries it.

    Exits 1 when the worker stopped on its own, saying why; when job threads ignored their
    cancellation it exits without waiting for them (their jobs' leases run out).
    """

    def stop(signum: int, frame: object) -> None:
        daemon.stop()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    daemon.run()
    if daemon.stuck:
        logging.shutdown()
        os._exit(1 if daemon.fatal else 0)  # threads that ignore cancellation can't be joined
    if daemon.fatal:
        fail(f"the worker stopped: {daemon.fatal}", 1)


@click.group()
def jobs() -> None:
    """Submit, list, show, cancel and retry queued jobs."""


@jobs.command()
@click.argument("prompt")
@click.option("-b", "--backend", help="Backend instance (default: default_backend).")
@click.option("-s", "--style", help="Style preset to apply (see imagen styles).")
@click.option("--negative", "negative_prompt", default="", help="Negative prompt.")
@click.option("--width", type=click.IntRange(min=1), help="Width in pixels.")
@click.option("--height", type=click.IntRange(min=1), help="Height in pixels.")
@click.option("--steps", type=click.IntRange(min=1), help="Sampling steps.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed of the first image.")
@click.option("-n", "--count", type=click.IntRange(1, 64), default=1, help="Images to make.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE", help="Backend option.")
@click.option(
    "--priority",
    type=click.IntRange(-(2**31), 2**31 - 1),  # the column is a PostgreSQL integer
    default=0,
    help="Higher runs first.",
)
@click.option(
    "--max-attempts", type=click.IntRange(1, 100), default=3, help="Attempts before failing."
)
@click.option("--owner", default=lambda: os.environ.get("USER") or "local", show_default="$USER")
@click.option(
    "--wait",
    is_flag=True,
    help="Follow the job until it ends, as `imagen jobs watch` does, and exit as it ended.",
)
@click.option("-q", "--quiet", is_flag=True, help="With --wait: no progress line.")
@click.option("--json", "as_json", is_flag=True)
@database_option
@click.pass_obj
def submit(
    state: State,
    prompt: str,
    opts: tuple[str, ...],
    wait: bool,
    quiet: bool,
    as_json: bool,
    database_url: str | None,
    **fields: Any,
) -> None:
    """Queue PROMPT as a job ("-" reads it from standard input); prints its id.

    The job is checked first (prompt, backend, style, sizes and options against what its
    backend can make), so a job that could never run is refused here and never queued.
    With --wait it then follows the job: the paths of its images, or its error and the
    exit code of how it ended.
    """
    from psycopg.rows import dict_row
    from psycopg.types.json import Jsonb

    from imagen.cli.generate import parse_option
    from imagen.pipeline import BackendPool
    from imagen_worker.submission import check_job

    if prompt == "-":
        prompt = click.get_text_stream("stdin").read().strip()
    options = dict(parse_option(text) for text in opts)
    request = {"prompt": prompt, "options": options, **fields}
    config = state.config()
    pool = BackendPool(config)
    try:
        check_job(config, request, pool=pool)
    finally:
        pool.close()
    columns = [name for name, value in request.items() if value is not None]
    values = {**request, "options": Jsonb(options)}
    with _connect(state, database_url) as conn:
        conn.row_factory = dict_row
        row = _insert(
            conn,
            f"INSERT INTO imagen.jobs ({', '.join(columns)}) "
            f"VALUES ({', '.join('%(' + c + ')s' for c in columns)}) RETURNING id, status",
            values,
        )
        if wait:
            from imagen_worker.watching import watch

            watch(conn, row["id"], config, as_json=as_json, quiet=quiet)
            return
        _warn_without_workers(conn, row["id"])
    click.echo(json.dumps(row) if as_json else str(row["id"]))


def _warn_without_workers(conn: Any, job_id: int) -> None:
    from imagen_worker.fleet import NO_WORKER, fleet

    if fleet(conn).workers == 0:
        logging.getLogger("imagen").warning("job %s: %s", job_id, NO_WORKER)


@jobs.command()
@click.argument("job_id", type=int)
@click.option("-q", "--quiet", is_flag=True, help="No progress line.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON once it ends.")
@database_option
@click.pass_obj
def watch(state: State, job_id: int, quiet: bool, as_json: bool, database_url: str | None) -> None:
    """Follow a job until it ends, with the progress line of imagen generate.

    Prints the paths of its images once it is done, and exits with the code of how it
    ended: 0 done, 130 cancelled, and for a failure the code imagen generate would have
    exited with (2 a request the backend refused, 3 configuration, 4 failed for good, 5
    failed for now, 7 output, 8 a spending cap). Ctrl-C stops watching; the job goes on.
    """
    from imagen_worker.watching import watch as follow_to_the_end

    with _connect(state, database_url) as conn:
        follow_to_the_end(conn, job_id, state.config(), as_json=as_json, quiet=quiet)


def _insert(conn: Any, query: str, values: dict[str, Any]) -> dict[str, Any]:
    """Run the job's INSERT; a check the database made and the door did not is one line."""
    import psycopg

    from imagen_worker.submission import JobRejected, constraint_field

    try:
        return conn.execute(query, values).fetchone()
    except psycopg.errors.CheckViolation as exc:
        constraint = exc.diag.constraint_name
        field = constraint_field(constraint)
        raise JobRejected(field, f"refused by the database ({constraint or 'a check'})") from None


@jobs.command(name="list")
@click.option("--status", type=click.Choice(["pending", "running", "done", "failed", "cancelled"]))
@click.option("--owner")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@database_option
@click.pass_obj
def list_jobs(
    state: State,
    status: str | None,
    owner: str | None,
    limit: int,
    as_json: bool,
    database_url: str | None,
) -> None:
    """List jobs, newest first: id, status, when it was queued, backend, owner and prompt.

    Times are local here; with --json they are ISO 8601 in UTC, as the HTTP API gives them.
    """
    from psycopg.rows import dict_row

    from imagen_worker.listing import table, to_json

    with _connect(state, database_url) as conn:
        conn.row_factory = dict_row
        rows = conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM imagen.jobs "
            "WHERE (%(status)s::text IS NULL OR status = %(status)s) "
            "AND (%(owner)s::text IS NULL OR owner = %(owner)s) ORDER BY id DESC LIMIT %(limit)s",
            {"status": status, "owner": owner, "limit": limit},
        ).fetchall()
    if as_json:
        click.echo(to_json(rows))
    elif rows:
        for line in table(rows):
            click.echo(line)
    else:
        click.echo("no jobs", err=True)


def _one(conn: Any, job_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM imagen.jobs WHERE id = %s", (job_id,)).fetchone()
    if row is None:
        raise RequestError(f"no job {job_id}")
    return row


@jobs.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@database_option
@click.pass_obj
def show(state: State, job_id: int, as_json: bool, database_url: str | None) -> None:
    """Show one job and its images (times local; with --json, ISO 8601 in UTC)."""
    from psycopg.rows import dict_row

    from imagen_worker.listing import job_lines, plain, to_json

    with _connect(state, database_url) as conn:
        conn.row_factory = dict_row
        row = _one(conn, job_id)
        row["images"] = conn.execute(
            "SELECT id, local_path, storage_location, mime_type, width, height, seed "
            "FROM imagen.images WHERE job_id = %s ORDER BY id",
            (job_id,),
        ).fetchall()
    row = plain(row)
    if as_json:
        click.echo(to_json(row))
        return
    for line in job_lines(row):
        click.echo(line)


@jobs.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@database_option
@click.pass_obj
def cancel(state: State, job_id: int, as_json: bool, database_url: str | None) -> None:
    """Cancel a job: at once when pending, through its worker when running."""
    from psycopg.rows import dict_row

    with _connect(state, database_url) as conn:
        conn.row_factory = dict_row
        _one(conn, job_id)
        row = conn.execute(
            "UPDATE imagen.jobs SET cancel_requested = true, updated_at = now() "
            "WHERE id = %s AND status IN ('pending', 'running') RETURNING status",
            (job_id,),
        ).fetchone()
        if row is None:
            raise RequestError(f"job {job_id} has already ended")
        # A pending job is cancelled by the database itself (migration 0005).
    outcome = "cancelled" if row["status"] == "pending" else "cancel requested"
    click.echo(
        json.dumps({"id": job_id, "outcome": outcome}) if as_json else f"job {job_id}: {outcome}"
    )


@jobs.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@database_option
@click.pass_obj
def retry(state: State, job_id: int, as_json: bool, database_url: str | None) -> None:
    """Queue a failed or cancelled job again, with fresh attempts."""
    with _connect(state, database_url) as conn:
        _one(conn, job_id)
        row = conn.execute(queries.REQUEUE, (job_id,)).fetchone()
    if row is None:
        raise RequestError(f"job {job_id} is not failed or cancelled")
    click.echo(
        json.dumps({"id": job_id, "outcome": "queued again"})
        if as_json
        else f"job {job_id}: queued again"
    )


@jobs.command()
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Delete finished jobs (done, failed, cancelled) older than this many days.",
)
@database_option
@click.pass_obj
def prune(state: State, as_json: bool, days: float, database_url: str | None) -> None:
    """Delete old finished jobs, keeping the queue table small (their images stay).

    Input images sent through imagen serve that no remaining job names, and untouched as
    long, are removed from serve.inputs_dir too.
    """
    from imagen_worker.job_inputs import inputs_dir, prune_uploads

    with _connect(state, database_url) as conn:
        deleted = conn.execute(
            "DELETE FROM imagen.jobs WHERE status IN ('done', 'failed', 'cancelled') "
            "AND finished_at < now() - make_interval(secs => %s)",
            (days * 86400,),
        ).rowcount
        named = conn.execute(
            "SELECT DISTINCT j.owner, ref ->> 'upload' FROM imagen.jobs AS j, "
            "jsonb_array_elements(CASE jsonb_typeof(j.inputs) WHEN 'array' THEN j.inputs "
            "ELSE '[]' END) AS ref WHERE ref ? 'upload'"
        ).fetchall()
    removed = prune_uploads(inputs_dir(state.config()), set(named), days * 86400)
    if as_json:
        click.echo(json.dumps({"deleted": deleted, "inputs_removed": removed}))
        return
    message = f"deleted {deleted} finished job(s) older than {days:g} days"
    if removed:
        message += f"; removed {removed} input image(s) no job names"
    click.echo(message)

"""``imagen serve`` and ``imagen serve-key``."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import click

from imagen.cli import State
from imagen_worker.options import concurrency_option, database_option, grace_option

__all__ = ["serve", "serve_key"]


@click.command()
@click.option("--host", help="Address to listen on (default: serve.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: serve.port, 8787).")
@database_option
@click.option(
    "--with-worker",
    is_flag=True,
    help="Also run a worker in this process: one command for a whole local setup.",
)
@concurrency_option(
    "Jobs the --with-worker worker runs at once (a slow one leaves the others room).",
    default=4,
)
@grace_option
@click.pass_obj
def serve(
    state: State,
    host: str | None,
    port: int | None,
    database_url: str | None,
    with_worker: bool,
    concurrency: int,
    grace: float,
) -> None:
    """Serve the OpenAI-compatible images API and the job API over HTTP."""
    import uvicorn

    from imagen_worker.audit import warn_at_start
    from imagen_worker.daemon import Worker, WorkerSettings
    from imagen_worker.database import ready_database
    from imagen_worker.serve.app import create_app
    from imagen_worker.serve.settings import read_serve

    logging.getLogger("imagen").setLevel(logging.DEBUG if state.debug else logging.INFO)
    config = state.config()
    settings = read_serve(config)
    if not settings.api_keys and settings.jwt_secret is None:
        click.echo(
            "imagen: no serve.api_keys and no serve.jwt_secret_env: every request will be "
            "refused (imagen serve-key OWNER makes a key)",
            err=True,
        )
    url = ready_database(database_url, config)
    warn_at_start(url, config)
    if not with_worker:
        _warn_without_workers(url)
    worker = (
        Worker(config, url, WorkerSettings(concurrency=concurrency, grace_s=grace))
        if with_worker
        else None
    )
    thread = (
        threading.Thread(target=worker.run, name="imagen-worker", daemon=True) if worker else None
    )
    host = host or settings.host
    port = settings.port if port is None else port
    base = f"http://{host}:{port}"
    click.echo(f"imagen serve: {base}/ (the gallery), {base}/v1 (the API)", err=True)
    app = create_app(config, url, settings)
    server = _server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="debug" if state.debug else "info",
            # Streams that follow jobs end as soon as the server stops (services.stopping);
            # a client that holds a connection open anyway is not waited for longer.
            timeout_graceful_shutdown=_GRACEFUL_S,
        ),
        app.state.services.stopping,
    )
    # uvicorn shuts down gracefully on SIGINT and SIGTERM, then raises the signal again for
    # the handler it found: let that be a quiet one, so that a stop exits 0 (for systemd).
    # A closed terminal (SIGHUP) stops it the same way.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    signal.signal(signal.SIGHUP, lambda *_: server.handle_exit(signal.SIGTERM, None))
    if thread is not None:
        thread.start()
    try:
        server.run()
    finally:
        if worker is not None and thread is not None:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, lambda *_: worker.stop())  # again: release jobs now
            worker.stop()
            if server.force_exit:  # the server was already told twice
                worker.stop()
            thread.join()


_GRACEFUL_S = 5


def _warn_without_workers(url: str) -> None:
    """Say so at start when no worker is running on the database: jobs would only wait."""
    from imagen_worker.database import connect
    from imagen_worker.fleet import NO_WORKER_FOR_JOBS, fleet

    with connect(url) as conn:
        workers = fleet(conn).workers
    if workers == 0:
        logging.getLogger("imagen").warning("%s", NO_WORKER_FOR_JOBS)


def _server(config: Any, stopping: threading.Event) -> Any:
    """The uvicorn server, telling the app (``stopping``) the moment it is asked to stop."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            stopping.set()
            super().handle_exit(sig, frame)

    return Server(config)


@click.command("serve-key")
@click.argument("owner")
def serve_key(owner: str) -> None:
    """Make an API key for OWNER: print it once, and the line that lets it in.

    OWNER is who the key acts for: the name row-level security compares with each job's
    owner (printable text on one line).
    """
    from imagen.serve_settings import owner_problem, yaml_scalar
    from imagen_worker.serve.settings import hash_key, new_key

    problem = owner_problem(owner)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="OWNER")

    key = new_key()
    click.echo(f"API key for {owner} (shown once, keep it secret):\n  {key}\n")
    click.echo("Add to imagen.yaml:\n  serve:\n    api_keys:")
    click.echo(f'      "{hash_key(key)}": {yaml_scalar(owner)}')

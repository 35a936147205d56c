"""``imagen mcp``: serve the tools over stdio, or over streamable HTTP with ``--http``.

Imported at every imagen start (the plugin adds the command): click and imagen's light
modules only; the MCP SDK, uvicorn and the pipeline load inside the command.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click

from imagen.cli import State

if TYPE_CHECKING:
    from imagen.config import Config

__all__ = ["mcp", "serve_key"]

log = logging.getLogger("imagen")


@click.command()
@click.option(
    "--http",
    "use_http",
    is_flag=True,
    help="Serve streamable HTTP (behind imagen serve's API keys and JWTs) instead of stdio.",
)
@click.option("--host", help="Address to listen on with --http (default: mcp.host, 127.0.0.1).")
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port for --http (default: mcp.port, 8788)."
)
@click.option(
    "--database-url",
    help="The queue's PostgreSQL URL, for submit_job, job_status and cancel_job (default: "
    "worker.database_url or $IMAGEN_DATABASE_URL; none: no queue tools).",
)
@click.pass_obj
def mcp(
    state: State, use_http: bool, host: str | None, port: int | None, database_url: str | None
) -> None:
    """Serve every configured backend as tools for AI agents, over MCP.

    \b
    Desktop clients launch it over stdio; add to their MCP config:
      {"command": "imagen", "args": ["mcp"]}
    With --http it serves http://HOST:PORT/mcp for remote clients, who sign in with
    a key from `imagen serve-key` or a Supabase-style JWT.
    """  # noqa: D301 (click reads \b as "keep these lines as they are")
    from imagen_mcp.server import build_server
    from imagen_mcp.settings import read_mcp

    if state.debug:
        log.setLevel(logging.DEBUG)
    config = state.config()
    settings = read_mcp(config)
    queue = _queue(config, database_url)
    if use_http:
        from imagen.tokens import read_credentials
        from imagen_mcp.http import serve_http

        credentials = read_credentials(config)
        if not credentials.anyone_can_sign_in:
            log.warning(
                "no serve.api_keys and no serve.jwt_secret_env: every request will be "
                "refused (imagen serve-key OWNER makes a key)"
            )
        serve_http(
            lambda base_url: build_server(
                config, settings, queue=queue, credentials=credentials, base_url=base_url
            ),
            host or settings.host,
            settings.port if port is None else port,
            settings.path,
        )
    else:
        build_server(config, settings, queue=queue).run_stdio()


def _queue(config: Config, explicit: str | None) -> str | None:
    """The queue's database URL when one is configured and imagen-worker is installed."""
    try:
        from imagen_worker.database import configured_url
    except ImportError:
        if explicit:
            raise click.UsageError(
                "--database-url needs imagen-worker (pip install 'imagen-mcp[queue]')"
            ) from None
        return None
    return explicit or configured_url(config)


@click.command("serve-key")
@click.argument("owner")
def serve_key(owner: str) -> None:
    """Make an API key for OWNER: print it once, and the line that lets it in."""
    from imagen.serve_settings import owner_problem, yaml_scalar
    from imagen.tokens import hash_key, new_key

    problem = owner_problem(owner)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="OWNER")
    key = new_key()
    click.echo(f"API key for {owner} (shown once, keep it secret):\n  {key}\n")
    click.echo("Add to imagen.yaml:\n  serve:\n    api_keys:")
    click.echo(f'      "{hash_key(key)}": {yaml_scalar(owner)}')

"""Adds ``imagen db`` (migrate, status, check) to the command line; imports no database driver."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from imagen import hookimpl
from imagen.cli import State
from imagen_worker.options import database_option

if TYPE_CHECKING:
    import psycopg

    from imagen.config import Config
    from imagen.sections import Section
    from imagen.usage import UsageSink
    from imagen_worker.audit import Finding


@click.group()
def db() -> None:
    """Create and inspect the queue's database schema."""


@db.command()
@database_option
@click.pass_obj
def migrate(state: State, database_url: str | None) -> None:
    """Apply the schema migrations not applied yet (safe to run from many hosts at once)."""
    from imagen_worker.database import connect, web_role
    from imagen_worker.database import database_url as resolve
    from imagen_worker.schema import migrate as apply

    config = state.config()
    with connect(resolve(database_url, config)) as conn:
        # What a migration could not do but did not fail on (a policy on a table this role
        # does not own, say) reaches the operator, not only the server log.
        conn.add_notice_handler(
            lambda notice: (
                notice.severity_nonlocalized == "WARNING"
                and click.echo(f"imagen: warning: {notice.message_primary}", err=True)
            )
        )
        done = apply(conn, web_role(config))
    if done:
        for migration in done:
            click.echo(f"applied {migration.version:04d} {migration.name}")
    else:
        click.echo("the schema is up to date")


@db.command()
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def status(state: State, database_url: str | None, as_json: bool) -> None:
    """Show which migrations are applied."""
    from imagen_worker.database import connect
    from imagen_worker.database import database_url as resolve
    from imagen_worker.schema import applied, available

    with connect(resolve(database_url, state.config())) as conn:
        done = applied(conn)
    rows = [
        {
            "version": m.version,
            "name": m.name,
            "applied_at": done[m.version].isoformat() if m.version in done else None,
        }
        for m in available()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['version']:04d} {row['name']:<20} {row['applied_at'] or 'pending'}")


@db.command()
@database_option
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option(
    "--fix", is_flag=True, help="Run the statements that fix the findings (as the tables' owner)."
)
@click.pass_obj
def check(state: State, database_url: str | None, as_json: bool, fix: bool) -> None:
    """Audit grants, policies and roles against what the design lets web callers do.

    Names each grant, policy or role setting that lets a web role (the configured one,
    anon, authenticated, PUBLIC) do more than the design allows, and each that the worker,
    cloud sync or the web role lack, with the SQL that fixes it. Exits 3 when it finds any.
    """
    from imagen_worker.audit import audit
    from imagen_worker.database import connect, web_role
    from imagen_worker.database import database_url as resolve

    config = state.config()
    role = web_role(config)
    with connect(resolve(database_url, config)) as conn:
        findings = audit(conn, role)
        if fix and findings:
            _fix(conn, findings)
            findings = audit(conn, role)
    if as_json:
        rows = [{"kind": f.kind, "problem": f.problem, "fix": list(f.fix)} for f in findings]
        click.echo(json.dumps(rows, indent=2))
    elif not findings:
        click.echo(f"the database allows {role} what the design does, and no more")
    else:
        for finding in findings:
            click.echo(f"{finding.kind}: {finding.problem}")
            for statement in finding.fix:
                click.echo(f"    {statement}")
        click.echo(f"{len(findings)} finding(s); imagen db check --fix runs the statements")
    if findings:
        raise click.exceptions.Exit(3)


def _fix(conn: psycopg.Connection, findings: list[Finding]) -> None:
    """Run every finding's statements in one transaction; one line naming a failure."""
    import psycopg

    from imagen import ConfigError

    statements = [s for f in findings for s in f.fix if not s.startswith("--")]
    try:
        with conn.transaction():
            for statement in statements:
                conn.execute(statement)
                click.echo(f"ran: {statement}", err=True)
    except psycopg.Error as exc:
        raise ConfigError(
            f"imagen db check --fix: {str(exc).strip().splitlines()[0]} "
            f"(nothing was changed; run the statements as the owner of the tables)"
        ) from exc


@hookimpl
def imagen_register_commands(cli: click.Group) -> None:
    from imagen_worker.commands import jobs, worker
    from imagen_worker.serve.commands import serve, serve_key

    cli.add_command(db)
    cli.add_command(worker)
    cli.add_command(jobs)
    cli.add_command(serve)
    cli.add_command(serve_key)


@hookimpl
def imagen_config_sections() -> list[Section]:
    from imagen_worker.settings import WORKER_SECTION

    return [WORKER_SECTION]  # serve: is imagen-core's (imagen mcp reads it too)


@hookimpl
def imagen_usage_sink(config: Config) -> UsageSink | None:
    """``mai.imagen_usage`` whenever a database is configured (never the embedded one)."""
    from imagen_worker.database import configured_url

    url = configured_url(config)
    if url is None:
        return None
    from imagen_worker.usage import PostgresUsageSink

    return PostgresUsageSink(url)


@hookimpl
def imagen_usage_sources(config: Config) -> list[UsageSink]:
    """The embedded database, when it exists and no other database is configured.

    The worker's and imagen serve's records are there, imagen generate's in the SQLite file.
    """
    from imagen_worker.database import configured_url, embedded_exists

    if configured_url(config) is not None or not embedded_exists():
        return []
    from imagen_worker.usage import EmbeddedUsageSink

    return [EmbeddedUsageSink()]

"""Command-line options that the worker's commands share (click only: imported at start)."""

from __future__ import annotations

import click

__all__ = ["concurrency_option", "database_option", "grace_option"]

database_option = click.option(
    "--database-url",
    help="PostgreSQL URL (default: worker.database_url, $IMAGEN_DATABASE_URL, or the "
    "embedded server).",
)


def concurrency_option(
    help: str, default: int | None = 1, show_default: bool | str = True
) -> click.decorators.FC:
    """``-c/--concurrency``: how many jobs a worker runs at once (None: the command decides)."""
    return click.option(
        "-c",
        "--concurrency",
        type=click.IntRange(min=1),
        default=default,
        show_default=show_default,
        help=help,
    )


grace_option = click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds running jobs get to finish on SIGTERM before they are released "
    "(a second SIGTERM or Ctrl-C releases them at once).",
)

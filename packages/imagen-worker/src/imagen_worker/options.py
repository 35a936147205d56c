"""Command-line options that the worker's commands share (click only: imported at start)."""

from __future__ import annotations

import click

__all__ = ["concurrency_option", "database_option"]

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

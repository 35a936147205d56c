"""``imagen new-adapter``: start a backend package for a new service."""

from __future__ import annotations

from pathlib import Path

import click

from imagen.cli import fail


@click.command("new-adapter")
@click.argument("name")
@click.option(
    "-d",
    "--directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Where to create the package's folder.",
)
def new_adapter(name: str, directory: Path) -> None:
    """Write a ready adapter package for backend type NAME.

    The package (imagen-NAME) has the `imagen` entry point, a backend skeleton speaking a
    simple HTTP API, a loopback stand-in of that API, and a test running imagen's
    conformance suite against it. It installs with `pip install -e` and shows in
    `imagen backends` at once.
    """
    from imagen.scaffold import write_adapter

    try:
        root = write_adapter(name, directory)
    except ValueError as exc:
        fail(str(exc), 2)
    click.echo(f"wrote {root}")
    click.echo("next:")
    click.echo(f'  cd {root} && pip install -e ".[test]" && pytest')
    click.echo("  imagen backends")

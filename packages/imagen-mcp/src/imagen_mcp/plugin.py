"""Adds ``imagen mcp`` to the command line; imports click only (the SDK loads when it runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from imagen import hookimpl

if TYPE_CHECKING:
    from imagen.sections import Section


@hookimpl
def imagen_config_sections() -> list[Section]:
    from imagen_mcp.settings import MCP_SECTION

    return [MCP_SECTION]


@hookimpl
def imagen_register_commands(cli: click.Group) -> None:
    from imagen_mcp.command import mcp, serve_key

    cli.add_command(mcp)
    # HTTP callers need a key; imagen-worker offers the same command when it is installed.
    if "serve-key" not in cli.commands:
        cli.add_command(serve_key)

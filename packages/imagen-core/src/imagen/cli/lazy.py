"""Built-in commands imported when they run, not at every start.

``imagen --help`` lists every command with its one-line summary; importing the sixteen
command modules for that costs about a sixth of the start. The root group knows each
built-in command by name, module and summary (:data:`BUILTIN`) and imports a module only
when its command is resolved (to run, complete or document it). A test keeps the
summaries here equal to the commands' own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import click

__all__ = ["BUILTIN", "LazyCommands", "load_builtin", "summary_of"]

BUILTIN: dict[str, tuple[str, str, str]] = {
    # name: (module, attribute, the first line of its help)
    "backends": ("imagen.cli.catalog", "backends", "List installed backend types and the configured backend instances."),
    "cloud": ("imagen.cli.cloud", "cloud", "Supabase Storage: catch up on images that were not uploaded."),
    "completion": ("imagen.cli.completion", "completion", "Print the completion script for SHELL; source it to complete imagen's commands."),
    "config": ("imagen.cli.configure", "config", "Check, show and locate the configuration."),
    "edit": ("imagen.cli.edit", "edit", "Edit an image as a prompt says."),
    "generate": ("imagen.cli.generate", "generate", 'Generate images from PROMPT ("-" reads it from standard input).'),
    "history": ("imagen.cli.history", "history", "List the images made here, newest first; TEXT searches their prompts."),
    "info": ("imagen.cli.info", "info", "Show how IMAGE was made."),
    "init": ("imagen.cli.configure", "init", "Write a commented starter imagen.yaml (default: ./imagen.yaml)."),
    "models": ("imagen.cli.models", "models", "List what BACKEND (default: every configured one) can use."),
    "new-adapter": ("imagen.cli.scaffold", "new_adapter", "Write a ready adapter package for backend type NAME."),
    "open": ("imagen.cli.history", "open_", 'Open IMAGE (a history id, "last", or a file) in the system\'s image viewer.'),
    "plugins": ("imagen.cli.catalog", "plugins", "List loaded plugins, their versions and the hooks they implement."),
    "resume": ("imagen.cli.resume", "resume", "Save the images of an unfinished run."),
    "styles": ("imagen.cli.catalog", "styles", "List the style presets of imagen.yaml."),
    "usage": ("imagen.cli.usage", "usage", "Show spend and counts per day, backend or model over a period."),
}  # fmt: skip
SHORT_HELP = {"edit"}  # commands whose summary is their ``short_help``, shown as it is


def summary_of(name: str, limit: int) -> str:
    """The summary ``imagen --help`` shows for built-in ``name``, as click would make it."""
    text = BUILTIN[name][2]
    if name in SHORT_HELP:
        return click.Command(name, short_help=text).get_short_help_str(limit)
    return click.Command(name, help=text).get_short_help_str(limit)


def load_builtin(name: str) -> click.Command:
    """The built-in command ``name``, its module imported."""
    module, attribute, _ = BUILTIN[name]
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command)
    return command


class LazyCommands(click.Group):
    """A group whose built-in commands load on first use (see the module docstring)."""

    #: called with each built-in command as it is loaded (``--json`` errors mark it)
    on_load: Callable[[click.Command], None] | None = None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in BUILTIN and cmd_name not in self.commands:
            self.load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def load(self, name: str) -> click.Command:
        command = load_builtin(name)
        if self.on_load is not None:
            self.on_load(command)
        self.commands[name] = command
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *BUILTIN})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, from the summaries of :data:`BUILTIN` for what is not loaded."""
        rows = []
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(name) for name in names), default=0)
        for name in names:
            command = self.commands.get(name)
            if command is None:
                rows.append((name, summary_of(name, limit)))
            elif not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

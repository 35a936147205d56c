"""``--json`` errors: with ``--json``, a failure is a JSON object on stdout, not an empty stdout.

Every command's ``--json`` option (imagen-core's and plugins' alike: the root group marks
them when the CLI is built) notes that JSON was asked for; the one place each failure ends
(:func:`imagen.cli.fail`, the usage-error ending) then prints, beside the usual
``imagen: …`` line on stderr, one object on stdout::

    {"error": {"type": "ConfigError", "exit_code": 3, "message": "…", "key": "…", …}}

``docs/cli.md`` documents the shape; keys with nothing to say are left out.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

__all__ = ["error_object", "mark_json_options", "print_error", "wanted"]

_FACTS = ("file", "line", "key", "backend", "upstream_id", "retry_after")


def _note(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value:
        ctx.meta["imagen.json"] = True
        root = ctx.find_root()
        root.meta["imagen.json"] = True
    return value


def mark_json_options(command: click.Command) -> None:
    """Make each ``--json`` flag of ``command`` and its subcommands note that JSON was asked."""
    for param in command.params:
        if isinstance(param, click.Option) and "--json" in param.opts and param.is_flag:
            if param.callback is None:
                param.callback = _note
            param.is_eager = True  # noted before any other value can fail to convert
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            mark_json_options(sub)


def wanted(ctx: click.Context | None, argv: Sequence[str] | None = None) -> bool:
    """Whether the failing command was given ``--json``.

    :param argv: the command line, for errors found while it was parsed (an unknown flag),
        before any option could say so.
    """
    if ctx is not None and ctx.find_root().meta.get("imagen.json"):
        return True
    if ctx is None or argv is None:
        return False
    if not any("--json" in p.opts for p in ctx.command.params if isinstance(p, click.Option)):
        return False
    given = list(argv)
    return "--json" in (given[: given.index("--")] if "--" in given else given)


def error_object(
    message: str, code: int, error: BaseException | None = None, *, hint: str | None = None
) -> dict[str, Any]:
    """The JSON object for a failure: its type, exit code, message and facts."""
    from imagen import secrets

    if error is None:
        kind = {1: "InternalError", 2: "UsageError", 130: "Interrupted"}.get(code, "Error")
    else:
        kind = type(error).__name__
    body: dict[str, Any] = {"type": kind, "exit_code": code, "message": secrets.redact(message)}
    for name in _FACTS:
        value = getattr(error, name, None)
        if value is not None:
            body[name] = str(value) if isinstance(value, Path) else value
    if hint:
        body["hint"] = hint
    return {"error": secrets.redact_data(body)}


def print_error(
    message: str, code: int, error: BaseException | None = None, *, hint: str | None = None
) -> None:
    """Write the failure's object on stdout (nothing if stdout is gone)."""
    with contextlib.suppress(OSError):
        click.echo(json.dumps(error_object(message, code, error, hint=hint), ensure_ascii=False))

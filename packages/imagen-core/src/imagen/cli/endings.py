"""How a command line ends when it does not end well: one line, the documented exit code.

click's own way is three lines for a usage error (usage, a hint, the error); imagen's is
the one line ``docs/cli.md`` promises: ``imagen: <what is wrong> (imagen CMD --help)``.
And a reader that stops early (``imagen usage | head -1``) ends the command the way it ends
any Unix tool, quietly, with the status a process killed by SIGPIPE has.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

__all__ = ["STDOUT_CLOSED", "run_standalone", "stdout_closed"]

STDOUT_CLOSED = 141
"""128 + SIGPIPE: what a shell reports for ``yes | head -1``'s ``yes``."""


def run_standalone(main: Callable[[], Any], argv: Sequence[str] = ()) -> NoReturn:
    """Run ``main`` (a click ``main`` in non-standalone mode) and exit as a command line does.

    :param argv: the command line, to tell whether a usage error should also be JSON.
    """
    try:
        result = main()
    except click.UsageError as exc:
        _one_line(exc.format_message(), exc.ctx, exc.exit_code, argv)
    except click.ClickException as exc:
        _one_line(exc.format_message(), None, exc.exit_code, argv)
    except click.Abort:
        _one_line("aborted", None, 130, argv)
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        stdout_closed()
    sys.exit(result if isinstance(result, int) else 0)


def _one_line(
    message: str, ctx: click.Context | None, code: int, argv: Sequence[str] = ()
) -> NoReturn:
    from imagen import secrets
    from imagen.cli import jsonout

    text = " ".join(message.split()).rstrip(".")
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        text += f" ({ctx.command_path} --help)"
    if jsonout.wanted(ctx, argv):
        jsonout.print_error(text, code)
    with contextlib.suppress(OSError):  # stderr gone too: the exit code is all that is left
        click.echo(f"imagen: {secrets.redact(text)}", err=True)
    sys.exit(code)


def stdout_closed() -> NoReturn:
    """End quietly because whoever read standard output stopped reading.

    What is still buffered for stdout can never be written: point the descriptor at
    /dev/null so the interpreter's last flush doesn't complain, and exit as SIGPIPE would.
    """
    with contextlib.suppress(OSError, ValueError):  # ValueError: no real descriptor (tests)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    sys.exit(STDOUT_CLOSED)

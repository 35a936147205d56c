"""The ``imagen`` command line.

Exit codes (also in ``docs/cli.md``):

==== =====================================================================
0    success
1    an unexpected internal error (a bug: rerun with ``--debug``)
2    a usage error: bad flags or arguments, an impossible request
3    a configuration error: imagen.yaml, a backend's slice, a credential
4    the generation failed for good (bad request, content policy, lost run)
5    the generation failed for now (timeout, upstream down, rate limit)
6    images were saved, but a later step (cloud sync, ...) failed
7    an image could not be written to the output directory
8    refused: the run's estimated cost would cross a spending cap
9    some prompts of ``generate --prompts`` failed; the others' images are saved
130  cancelled (Ctrl-C), or a paid run the user chose not to make
141  standard output was closed early (``| head``): as a Unix tool killed by SIGPIPE
==== =====================================================================
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from imagen import __version__
from imagen.cli.lazy import BUILTIN, LazyCommands
from imagen.errors import ImagenError

if TYPE_CHECKING:
    from imagen.config import Config

__all__ = ["EXIT_CODES", "cli", "fail", "main", "one_line", "show_error"]

EXIT_CODES = {
    0: "success",
    1: "an unexpected internal error (a bug: rerun with --debug)",
    2: "a usage error: bad flags or arguments, an impossible request",
    3: "a configuration error: imagen.yaml, a backend's slice, a credential (also one "
    "the service refused: 401, 403)",
    4: "the generation failed for good (bad request, content policy, lost run)",
    5: "the generation failed for now (timeout, upstream down, rate limit)",
    6: "images were saved, but a later step (cloud sync, ...) failed",
    7: "an image could not be written to the output directory",
    8: "refused: the run's estimated cost would cross a spending cap (usage.budget)",
    9: "some prompts of `generate --prompts` failed; the others' images are saved (when "
    "every prompt failed: the first failure's own code)",
    130: "cancelled (Ctrl-C), or a paid run declined at the question",
    141: "standard output was closed before everything was printed (`| head`); "
    "nothing else went wrong: the status a Unix tool killed by SIGPIPE has",
}
STEP_FAILED = 6

log = logging.getLogger("imagen")


class State:
    """What the root group's options tell every command."""

    def __init__(self, config_path: Path | None = None, debug: bool = False) -> None:
        self.config_path = config_path
        self.debug = debug
        self._config: Config | None = None

    def config(self) -> Config:
        """The loaded config (read once per process)."""
        if self._config is None:
            from imagen.config import load_config

            self._config = load_config(self.config_path)
        return self._config


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes log records as ``imagen: message`` lines to stderr, one line each.

    A progress line on the terminal is erased first (the next progress report redraws
    it), and a message of several lines is cut to its first unless debugging.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("imagen: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # follow redirections (click's test runner swaps it)
        from imagen.cli.progress import ProgressLine

        if ProgressLine.shown is not None:
            ProgressLine.shown.clear()
        super().emit(record)

    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record), debug=log.isEnabledFor(logging.DEBUG))


def setup_logging(level: int = logging.WARNING) -> None:
    """Send imagen's log lines to stderr as ``imagen: …`` (once per process)."""
    if not any(isinstance(h, _Handler) for h in log.handlers):
        log.addHandler(_Handler())
        log.propagate = False
    log.setLevel(level)


def one_line(text: str, *, debug: bool = False) -> str:
    """``text`` on one line: its first non-blank line, saying how many more there are.

    Upstream errors can span lines (ComfyUI passes its exceptions' text through); the
    whole text is kept for ``--debug``.
    """
    if debug:
        return text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else text.strip()
    more = len(lines) - 1
    return f"{lines[0]} (+{more} more line{'s' if more > 1 else ''}: rerun with --debug)"


def fail(
    message: str, code: int, *, hint: str | None = None, error: BaseException | None = None
) -> NoReturn:
    """Print ``imagen: message`` on one line to stderr and exit with ``code``.

    With ``--json``, the failure is also a JSON object on stdout (:mod:`imagen.cli.jsonout`).

    :param hint: what the user can do next, added to the line after the message.
    :param error: the error being reported, for the facts the JSON object carries.
    """
    from imagen import secrets
    from imagen.cli import jsonout

    ctx = click.get_current_context(silent=True)
    text = one_line(secrets.redact(message), debug=ctx is not None and _debugging(ctx))
    if jsonout.wanted(ctx):
        jsonout.print_error(one_line(secrets.redact(message)), code, error, hint=hint)
    click.echo(f"imagen: {text}" + (f"; {hint}" if hint else ""), err=True)
    raise click.exceptions.Exit(code)


def show_error(exc: ImagenError, *, hint: str | None = None) -> NoReturn:
    """Report ``exc`` as ``fail`` does, with its traceback when debugging; exit with its code."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and _debugging(ctx):
        traceback.print_exc()
    fail(str(exc), exc.exit_code, hint=hint, error=exc)


class ImagenGroup(LazyCommands):
    """The root group: turns imagen's errors into one line and an exit code."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # click measures the terminal with shutil, whose import (bz2, lzma) costs --help 2 ms
        extra.setdefault("terminal_width", _terminal_width())
        return super().make_context(info_name, args, parent, **extra)

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """Run the command line; standalone, end it as docs/cli.md says (cli/endings.py)."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        from imagen.cli.endings import run_standalone

        argv = kwargs.get("args", args[0] if args else None)
        return run_standalone(
            lambda: super(ImagenGroup, self).main(*args, standalone_mode=False, **kwargs),
            sys.argv[1:] if argv is None else list(argv),
        )

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImagenError as exc:
            show_error(exc)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:  # whoever read stdout stopped reading: not a bug
            from imagen.cli.endings import stdout_closed

            stdout_closed()
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 (a bug: one line, the traceback on request)
            if _debugging(ctx):
                traceback.print_exc()
                fail(f"internal error: {type(exc).__name__}: {exc}", 1)
            fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)", 1)


def _terminal_width() -> int:
    """What ``shutil.get_terminal_size().columns`` says: ``$COLUMNS``, the terminal, or 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns or 80


def _debugging(ctx: click.Context) -> bool:
    state = ctx.find_object(State)
    return bool(state and state.debug) or bool(os.environ.get("IMAGEN_DEBUG"))


@click.group(cls=ImagenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=None,
    help="Config file to use (default: $IMAGEN_CONFIG, ./imagen.yaml, the user config "
    "directory: imagen config path --all).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.version_option(__version__, "--version", prog_name="imagen")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, debug: bool) -> None:
    """Turn a prompt into image files through any image-generation service.

    \b
    Start with:
      imagen generate "a lighthouse at dusk"     (offline, no config needed)
      imagen init                                 (write a commented imagen.yaml)
    """  # noqa: D301 (click reads \b as "keep these lines as they are")
    ctx.obj = State(config_path=config_path, debug=debug or bool(os.environ.get("IMAGEN_DEBUG")))
    if ctx.obj.debug:
        log.setLevel(logging.DEBUG)


def _register_builtin_commands() -> None:
    """Load every built-in command now (the docs generator lists them all)."""
    for name in BUILTIN:
        if name not in cli.commands:
            cli.load(name)


def _register_plugin_commands() -> None:
    from imagen.plugins import LoadFailure, get_plugin_manager, origin, record_failure

    manager = get_plugin_manager()
    builtin = {name: cli.commands.get(name) for name in BUILTIN}
    for impl in manager.hook.imagen_register_commands.get_hookimpls():
        try:
            impl.function(cli)
        except Exception as exc:  # noqa: BLE001 (a broken plugin must not break the CLI)
            distribution, _ = origin(impl.plugin_name)
            reason = f"imagen_register_commands: {type(exc).__name__}: {exc}"
            record_failure(LoadFailure(impl.plugin_name, distribution, reason))
    for name, command in builtin.items():
        if cli.commands.get(name) is not command:
            log.warning('a plugin replaced the built-in command "%s"; keeping the built-in', name)
            if command is None:
                del cli.commands[name]  # loaded when it runs
            else:
                cli.commands[name] = command


_built = False


def build() -> click.Group:
    """The root group with the built-in and the plugins' commands added (once)."""
    global _built
    if not _built:
        _built = True
        setup_logging()
        from imagen.cli.jsonout import mark_json_options

        cli.on_load = mark_json_options  # each built-in command, when it is first used
        _register_plugin_commands()
        mark_json_options(cli)
    return cli


_process = False


def owns_process() -> bool:
    """True when the command runs as the ``imagen`` program: the process ends with it."""
    return _process


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``imagen`` console script."""
    global _process
    _process = True
    build().main(args=argv, prog_name="imagen")

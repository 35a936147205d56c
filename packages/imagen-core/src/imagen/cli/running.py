"""Running one generation from the CLI: progress, Ctrl-C, the record of the run, the report.

``imagen generate`` and ``imagen resume`` both go through :func:`run`: it shows progress on
a terminal, turns Ctrl-C into cancellation, keeps the record of the run in flight
(:mod:`imagen.runs`) while the backend follows it, and reports the outcome.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imagen.cli import owns_process, show_error
from imagen.errors import ImagenError

if TYPE_CHECKING:
    from imagen.config import Config
    from imagen.context import Context
    from imagen.pipeline import BackendPool, Outcome
    from imagen.runs import RunBook, RunRecord

__all__ = ["RunTracker", "report", "run"]

log = logging.getLogger("imagen")


@contextmanager
def cancel_on_interrupt(context: Context) -> Iterator[None]:
    """First Ctrl-C cancels the run cleanly; a second one stops at once.

    Stopping at once still lets the backend tell its upstream to stop (ComfyUI's interrupt,
    sent as the KeyboardInterrupt passes through it), so from the second Ctrl-C on, further
    ones are ignored until the command is over.
    """
    if sys.platform == "win32" or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if context.cancelled:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            raise KeyboardInterrupt
        log.warning("cancelling… (Ctrl-C again to stop at once)")
        context.cancel()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        if context.cancelled and owns_process():
            # The program is ending: a late Ctrl-C must not turn a clean exit into a traceback.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGINT, previous)


@dataclass
class RunTracker:
    """Keeps the record of one run in flight in step with what the backend reports.

    :param book: where records live.
    :param record: the record to write once the backend reports its run id (its ``run_id``
        is replaced by the reported one).
    """

    book: RunBook
    record: RunRecord
    written: bool = False
    _warned: bool = field(default=False, repr=False)

    def on_run_id(self, run_id: str) -> None:
        """Write the record with ``run_id`` (the context calls it from the backend's thread)."""
        self.record = self.record.with_run_id(run_id)
        try:
            self.book.save(self.record)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot record run %s in %s (%s): `imagen resume` will not know it",
                    run_id,
                    self.book.directory,
                    exc.strerror or exc,
                )
            return
        self.written = True

    def ended(self, error: BaseException | None) -> bool:
        """Forget the record unless the run may go on; True when it is kept."""
        from imagen.runs import may_go_on

        if not self.written:
            return False
        if may_go_on(error):
            return True
        try:
            self.book.forget(self.record)
        except OSError as exc:
            log.warning("cannot remove the record of run %s: %s", self.record.run_id, exc)
        return False


def run(
    config: Config,
    pool: BackendPool,
    tracker: RunTracker | None,
    *,
    label: str,
    quiet: bool,
    **pipeline: Any,
) -> Outcome:
    """Run the pipeline once, with progress, Ctrl-C and the run's record.

    :param label: the backend name the progress line shows.
    :param pipeline: keyword arguments for :func:`imagen.pipeline.generate`.
    :raises ImagenError: shown as one line; when the run may still finish upstream, the
        line says how to resume it.
    """
    from imagen.context import Context
    from imagen.pipeline import generate

    progress = None
    if sys.stderr.isatty() and not quiet:
        from imagen.cli.progress import ProgressLine

        progress = ProgressLine(label)
    context = Context(on_progress=progress, on_run_id=tracker.on_run_id if tracker else None)
    try:
        with cancel_on_interrupt(context):
            outcome = generate(config, context=context, pool=pool, **pipeline)
    except BaseException as exc:
        if progress is not None:
            progress.clear()
        kept = tracker is not None and tracker.ended(exc)
        if kept and isinstance(exc, ImagenError):
            assert tracker is not None
            show_error(exc, hint=f"to save its images later: imagen resume {tracker.record.run_id}")
        raise
    if progress is not None:
        progress.clear()
    if tracker is not None:
        tracker.ended(None)
    return outcome


def report(outcome: Outcome, backend: str, as_json: bool, quiet: bool, explicit: set[str]) -> None:
    """Print the saved paths (or the JSON result), then the notes a user should see."""
    if as_json:
        click.echo(
            json.dumps(
                {
                    "backend": backend,
                    "duration_s": round(outcome.duration_s, 3),
                    "images": [
                        {
                            "path": str(i.path),
                            "sidecar": str(i.sidecar) if i.sidecar else None,
                            "mime_type": i.mime_type,
                            "width": i.record.get("width"),
                            "height": i.record.get("height"),
                            "seed": i.record.get("seed"),
                            "image_seed": i.record.get("image_seed"),
                        }
                        for i in outcome.images
                    ],
                    "ignored": outcome.ignored,
                    "metadata": outcome.metadata,
                    "notes": outcome.notes,
                    "step_failures": [str(f) for f in outcome.step_failures],
                },
                indent=2,
                default=str,
            )
        )
    else:
        for image in outcome.images:
            click.echo(str(image.path))
    if not quiet:
        told = [name for name in outcome.ignored if name in explicit or name.startswith("options.")]
        if told:
            log.warning('backend "%s" ignored: %s', backend, ", ".join(told))
    for failure in outcome.step_failures:
        log.error("%s failed: %s", failure.hook.removeprefix("imagen_"), failure)


def absolute(path: Path) -> str:
    """``path`` made absolute (a record is read back from anywhere)."""
    return str(path.expanduser().resolve())

"""The generation context: cancellation, deadline, progress and the upstream run id.

A backend receives one :class:`Context` per call. It is imagen's equivalent of Go's
``context.Context``: the caller (the CLI, the worker) may cancel the run from another
thread or a signal handler, may set a deadline, and listens to progress and to the id of
the upstream run the backend started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from imagen.errors import Cancelled, DeadlineExceeded

__all__ = ["Context", "Progress", "ProgressKind"]

ProgressKind = Literal["queued", "started", "step", "status", "downloading", "finished"]
PROGRESS_KINDS: tuple[ProgressKind, ...] = (
    "queued",
    "started",
    "step",
    "status",
    "downloading",
    "finished",
)


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report from a backend.

    :param kind: ``queued`` (waiting upstream; ``current`` may be the queue position),
        ``started`` (the upstream began work), ``step`` (``current`` of ``total`` steps),
        ``status`` (a free-form upstream status in ``message``), ``downloading``
        (fetching outputs), ``finished`` (the upstream run ended).
    :param current: the step or position, when the kind has one.
    :param total: the number of steps, when known.
    :param message: a short human-readable detail (a node name, an upstream status).
    """

    kind: ProgressKind
    current: int | None = None
    total: int | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.kind not in PROGRESS_KINDS:
            raise ValueError(f"unknown progress kind {self.kind!r}")
        if self.total is not None and self.total < 0:
            raise ValueError("progress total must not be negative")
        if self.current is not None and self.total is not None and self.current > self.total:
            raise ValueError(f"progress {self.current} is past its total {self.total}")


ProgressCallback = Callable[[Progress], None]


class Context:
    """What a running generation can ask of its caller, and tell it.

    Backends call :meth:`check` (or :meth:`wait`) between steps, :meth:`progress` to report
    how far they are, and :meth:`report_run_id` as soon as the upstream has an id for the
    run. Callers call :meth:`cancel` from any thread.

    :param deadline_s: seconds from now after which the run counts as failed, or None.
    :param on_progress: called with every :class:`Progress`, in the backend's thread.
    :param on_run_id: called with the upstream run id when the backend reports one.
    """

    def __init__(
        self,
        *,
        deadline_s: float | None = None,
        on_progress: ProgressCallback | None = None,
        on_run_id: Callable[[str], None] | None = None,
    ) -> None:
        self._cancel = threading.Event()
        self._detached = False
        self._deadline = None if deadline_s is None else time.monotonic() + deadline_s
        self._on_progress = on_progress
        self._on_run_id = on_run_id
        self.run_id: str | None = None
        """The id of the upstream run (a ComfyUI prompt, a Replicate prediction), once known."""

    # -- for callers ---------------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the run to stop. Safe from any thread and from signal handlers."""
        self._cancel.set()

    def detach(self) -> None:
        """Stop following the run, but leave it going upstream.

        The worker detaches a job it can no longer hold (its lease was lost, or it is
        shutting down): another worker resumes the same upstream run by its id, so it must
        not be interrupted or cancelled. To a backend this is a cancellation (``check``
        raises :class:`Cancelled`) whose :attr:`detached` is True: stop waiting, skip the
        upstream interrupt.
        """
        self._detached = True
        self._cancel.set()

    # -- for backends --------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` (or :meth:`detach`) was called."""
        return self._cancel.is_set()

    @property
    def detached(self) -> bool:
        """True once :meth:`detach` was called: don't interrupt the upstream run."""
        return self._detached

    def time_left(self) -> float | None:
        """Seconds until the deadline (never negative), or None when there is none."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def check(self) -> None:
        """Raise :class:`Cancelled` or :class:`DeadlineExceeded` if the run must stop."""
        if self._cancel.is_set():
            raise Cancelled()
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise DeadlineExceeded()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking at once on cancellation or the deadline.

        Raises :class:`Cancelled` or :class:`DeadlineExceeded` when woken by either.
        """
        left = self.time_left()
        timeout = seconds if left is None else min(seconds, left)
        if self._cancel.wait(max(0.0, timeout)):
            raise Cancelled()
        self.check()

    def progress(self, progress: Progress) -> None:
        """Report progress to the caller."""
        if self._on_progress is not None:
            self._on_progress(progress)

    def report_run_id(self, run_id: str) -> None:
        """Record the upstream run's id, so a caller can re-attach with ``resume`` later."""
        self.run_id = run_id
        if self._on_run_id is not None:
            self._on_run_id(run_id)

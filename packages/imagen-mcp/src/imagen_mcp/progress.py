"""A backend's progress, reported in its own thread, as MCP progress notifications.

MCP wants one number that only grows, and a total when there is one. imagen's progress
comes as kinds (queued, started, step n of m, an upstream status, downloading, finished),
so each is placed on a 0 to 100 scale: started is 1, the steps fill 2 to 98, downloading
98, finished 99, the saved images 100; a report without a place of its own (a queue
position, a status line) nudges the number on by a hair, so it still grows.

The backend never waits for the client: its reports are queued and a task on the event
loop sends them, dropping none and never blocking the generation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable

import anyio
import anyio.from_thread
import anyio.lowlevel

from imagen.context import Progress

__all__ = ["ProgressRelay", "scale"]

log = logging.getLogger("imagen")

TOTAL = 100.0
_NUDGE = 0.001

Report = Callable[[float, float | None, str | None], Awaitable[None]]


def scale(progress: Progress, last: float) -> tuple[float, str]:
    """Where ``progress`` sits on the 0-100 scale after ``last``, and what to say about it."""
    kind, current, total = progress.kind, progress.current, progress.total
    if kind == "started":
        value, text = 1.0, "started"
    elif kind == "step" and current is not None and total:
        value, text = 1.0 + 97.0 * current / total, f"step {current} of {total}"
    elif kind == "step":
        value, text = last + _NUDGE, f"step {current}" if current is not None else "working"
    elif kind == "queued":
        value = last + _NUDGE
        text = f"queued (position {current})" if current is not None else "queued"
    elif kind == "downloading":
        value, text = 98.0, "downloading"
    elif kind == "finished":
        value, text = 99.0, "finished"
    else:
        value, text = last + _NUDGE, progress.message or kind
    if progress.message and progress.message not in text:
        text = f"{text}: {progress.message}"
    # A report may never repeat or go back (a second image's steps start over), nor reach
    # 100 before the images are saved.
    return min(max(value, last + _NUDGE), TOTAL - _NUDGE), text


class ProgressRelay:
    """Takes :class:`~imagen.Progress` in any thread, sends MCP progress from the loop.

    Create it on the event loop, run :meth:`forward` in a task there, and pass the relay
    itself as ``imagen.Context(on_progress=...)``.

    :param report: ``ctx.report_progress`` of the tool call (a no-op when the client
        asked for no progress).
    """

    def __init__(self, report: Report) -> None:
        self._report = report
        self._token = anyio.lowlevel.current_token()
        self._lock = threading.Lock()
        self._pending: list[tuple[float, str]] = []
        self._last = 0.0
        self._wake = anyio.Event()

    def __call__(self, progress: Progress) -> None:
        """Queue ``progress`` (called in the backend's thread)."""
        with self._lock:
            self._last, text = scale(progress, self._last)
            self._pending.append((self._last, text))
        try:
            anyio.from_thread.run_sync(self._poke, token=self._token)
        except Exception:  # noqa: BLE001 (the loop is gone: the call is over, nobody listens)
            log.debug("progress after the call ended: %s", text)

    def _poke(self) -> None:
        self._wake.set()

    async def forward(self) -> None:
        """Send queued reports as they come, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Send what is queued now."""
        with self._lock:
            pending, self._pending = self._pending, []
        for value, text in pending:
            await self._report(value, TOTAL, text)

    async def done(self, text: str) -> None:
        """Send what is queued, then 100 with ``text``."""
        await self.flush()
        await self._report(TOTAL, TOTAL, text)

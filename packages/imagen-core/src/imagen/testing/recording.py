"""A Context that records what a backend reported, for assertions."""

from __future__ import annotations

import threading

from imagen.context import Context, Progress

__all__ = ["RecordingContext"]


class RecordingContext(Context):
    """A :class:`~imagen.Context` that keeps every progress report and run id.

    :param deadline_s: as for :class:`~imagen.Context`.
    """

    def __init__(self, *, deadline_s: float | None = None) -> None:
        self.events: list[Progress] = []
        self.run_ids: list[str] = []
        self.first_event = threading.Event()
        self.run_id_reported = threading.Event()
        super().__init__(deadline_s=deadline_s, on_progress=self._progress, on_run_id=self._run_id)

    def _progress(self, progress: Progress) -> None:
        self.events.append(progress)
        self.first_event.set()

    def _run_id(self, run_id: str) -> None:
        self.run_ids.append(run_id)
        self.run_id_reported.set()

"""A one-line progress display on stderr, for terminals."""

from __future__ import annotations

import sys
import threading
from typing import ClassVar, TextIO

from imagen.context import Progress

__all__ = ["ProgressLine"]


class ProgressLine:
    """Rewrites one stderr line with the latest progress; :meth:`clear` erases it."""

    shown: ClassVar[ProgressLine | None] = None
    """The line on the terminal now, if any: a log line erases it first."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._width = 0

    def __call__(self, progress: Progress) -> None:
        text = f"{self.label}: {_describe(progress)}"
        with self._lock:
            padding = " " * max(0, self._width - len(text))
            self.stream.write(f"\r{text}{padding}")
            self.stream.flush()
            self._width = len(text)
            ProgressLine.shown = self

    def clear(self) -> None:
        with self._lock:
            if self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
                self._width = 0
            if ProgressLine.shown is self:
                ProgressLine.shown = None


def _describe(progress: Progress) -> str:
    if progress.kind == "step" and progress.total:
        done = progress.current or 0
        filled = round(20 * done / progress.total)
        bar = "#" * filled + "-" * (20 - filled)
        text = f"[{bar}] {done}/{progress.total}"
    elif progress.kind == "queued" and progress.current is not None:
        text = f"queued (position {progress.current})"
    elif progress.kind == "status" and progress.message:
        return progress.message  # an upstream status or a retry: the message says it all
    else:
        text = progress.kind
    return f"{text} {progress.message}".rstrip()

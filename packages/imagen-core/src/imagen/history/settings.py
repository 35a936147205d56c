"""The ``history:`` section: whether images are indexed, and where."""

from __future__ import annotations

from imagen.sections import Section, Setting

__all__ = ["HISTORY", "HISTORY_SECTION"]

HISTORY: dict[str, Setting] = {
    "record": Setting(
        bool, True, "index every image made (prompt, backend, time, path) for `imagen history`"
    ),
    "path": Setting(
        str, None, "the index file; default `history.sqlite3` in the user data directory"
    ),
}

HISTORY_SECTION = Section("history", "the local index of every image made", HISTORY)

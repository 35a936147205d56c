"""The per-session image limit: an agent caught in a loop stops, with a reason it can read."""

from __future__ import annotations

import threading
from collections.abc import Hashable

__all__ = ["ImageLimit", "LimitReached"]


class LimitReached(Exception):
    """A call would take a session past ``mcp.max_session_images``; the message says by how much."""


class ImageLimit:
    """Counts the images each session made, and refuses a call that would go past the limit.

    A call reserves its ``count`` before it runs and settles with what it really made, so two
    calls at once cannot both slip under the limit.

    :param limit: images per session; 0 for no limit.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def used(self, session: Hashable) -> int:
        """Images made (or held by a running call) in ``session``."""
        with self._lock:
            return self._used.get(session, 0)

    def reserve(self, session: Hashable, count: int) -> None:
        """Hold ``count`` images for a call of ``session``.

        :raises LimitReached: when they would take the session past the limit.
        """
        with self._lock:
            used = self._used.get(session, 0)
            if self.limit and used + count > self.limit:
                left = max(0, self.limit - used)
                raise LimitReached(
                    f"refused: this session has made {used} of its {self.limit} images "
                    f"(mcp.max_session_images), so {count} more would cross the limit"
                    + (f"; at most {left} more may be asked for" if left else "")
                    + ". Start a new session to make more."
                )
            self._used[session] = used + count

    def settle(self, session: Hashable, reserved: int, made: int) -> None:
        """Replace a call's reservation of ``reserved`` by the ``made`` images it really made."""
        with self._lock:
            self._used[session] = max(0, self._used.get(session, 0) - reserved + made)

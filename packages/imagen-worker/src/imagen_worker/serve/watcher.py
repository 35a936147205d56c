"""One LISTEN for the whole server: it wakes the requests that follow a job when it changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Iterator

import psycopg

from imagen_worker.database import KEEPALIVE

__all__ = ["JobWatcher"]

log = logging.getLogger("imagen")
_CHANNEL = "imagen_progress"  # where workers announce progress and how jobs end


class JobWatcher:
    """Wakes whoever follows a job when a worker announces a change to it.

    A thread of its own LISTENs on ``imagen_progress`` over one connection, however many
    requests follow jobs. A notification only says "look again": the follower re-reads the
    job as its caller, under row-level security, so nothing passes through here that the
    caller could not read anyway. Notifications can be missed (the connection drops, or a
    change that is not announced, such as a claim), so followers also look again on a timer.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._followers: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def follow(self, job_id: int) -> Iterator[asyncio.Event]:
        """An event set whenever job ``job_id`` may have changed; call from an event loop."""
        follower = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name="imagen-serve-watcher", daemon=True
                )
                self._thread.start()
            self._followers.setdefault(job_id, set()).add(follower)
        try:
            yield follower[1]
        finally:
            with self._lock:
                followers = self._followers.get(job_id, set())
                followers.discard(follower)
                if not followers:
                    self._followers.pop(job_id, None)

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _wake(self, job_id: int | None) -> None:
        """Wake the followers of ``job_id``, or everyone's when it is None."""
        with self._lock:
            if job_id is None:
                followers = [f for group in self._followers.values() for f in group]
            else:
                followers = list(self._followers.get(job_id, ()))
        for loop, event in followers:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody to wake
                loop.call_soon_threadsafe(event.set)

    def _listen(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, **KEEPALIVE) as conn:
                    conn.execute(f"LISTEN {_CHANNEL}")
                    delay = 0.5
                    self._wake(None)  # anything announced while we were away
                    while not self._stopping.is_set():
                        for notify in conn.notifies(timeout=1.0):
                            job_id = _job_id(notify.payload)
                            if job_id is not None:
                                self._wake(job_id)
            except psycopg.Error as exc:
                log.warning("imagen serve: lost the job announcements (%s); reconnecting", exc)
                self._wake(None)
                self._stopping.wait(delay)
                delay = min(delay * 2, 10.0)


def _job_id(payload: str) -> int | None:
    try:
        job_id = json.loads(payload).get("id")
    except (ValueError, AttributeError):
        return None
    return job_id if isinstance(job_id, int) else None

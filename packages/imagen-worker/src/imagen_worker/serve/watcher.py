"""One LISTEN for the whole server: it wakes the requests that follow a job when it changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator

import psycopg

from imagen_worker.database import KEEPALIVE
from imagen_worker.notices import PROGRESS_CHANNEL, ProgressKey

__all__ = ["JobWatcher"]

log = logging.getLogger("imagen")


class JobWatcher:
    """Wakes whoever follows a job when a worker announces a change to it.

    A thread of its own LISTENs on ``imagen_progress`` over one connection, however many
    requests follow jobs. A notification carries only a job's token (see
    :mod:`imagen_worker.notices`) and only says "look again": the follower re-reads the job
    as its caller, under row-level security, so nothing passes through here that the caller
    could not read anyway, and a notification anyone else sends can at most wake a follower
    early. Notifications can be missed (the connection drops, or a change that is not
    announced, such as a claim), so followers also look again on a timer.

    :param key: the database's progress key; until it is set, followers rely on the timer.
    """

    def __init__(self, url: str, key: ProgressKey | None = None) -> None:
        self.url = url
        self.key = key
        self._followers: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def follow(self, job_id: int) -> Iterator[asyncio.Event]:
        """An event set whenever job ``job_id`` may have changed; call from an event loop."""
        follower = (asyncio.get_running_loop(), asyncio.Event())
        token = self.key.token(job_id) if self.key is not None else f"id:{job_id}"
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name="imagen-serve-watcher", daemon=True
                )
                self._thread.start()
            self._followers.setdefault(token, set()).add(follower)
        try:
            yield follower[1]
        finally:
            with self._lock:
                followers = self._followers.get(token, set())
                followers.discard(follower)
                if not followers:
                    self._followers.pop(token, None)

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _wake(self, token: str | None) -> None:
        """Wake the followers of the job ``token`` names, or everyone's when it is None."""
        with self._lock:
            if token is None:
                followers = [f for group in self._followers.values() for f in group]
            else:
                followers = list(self._followers.get(token, ()))
        for loop, event in followers:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody to wake
                loop.call_soon_threadsafe(event.set)

    def _listen(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, **KEEPALIVE) as conn:
                    conn.execute(f"LISTEN {PROGRESS_CHANNEL}")
                    delay = 0.5
                    self._wake(None)  # anything announced while we were away
                    while not self._stopping.is_set():
                        for notify in conn.notifies(timeout=1.0):
                            if len(notify.payload) <= 64:  # a token; anything else is not ours
                                self._wake(notify.payload)
            except Exception as exc:  # noqa: BLE001 (whatever broke, followers must not hang)
                log.warning("imagen serve: lost the job announcements (%s); reconnecting", exc)
                self._wake(None)
                self._stopping.wait(delay)
                delay = min(delay * 2, 10.0)

"""Job announcements on ``imagen_progress``, sent in batches from a thread of their own.

Each announcement is a job's token (:mod:`imagen_worker.notices`): "look at this job again".
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import psycopg

__all__ = ["Announcer"]

log = logging.getLogger("imagen")
_CLOSE = object()
_SEND = "SELECT count(pg_notify('imagen_progress', token)) FROM unnest(%s::text[]) AS token"


class Announcer:
    """Sends ``pg_notify('imagen_progress', …)`` for jobs' progress and status changes.

    Each transaction that sends a NOTIFY takes PostgreSQL's notification-queue lock at
    commit, which serialises them; sending every announcement that has queued up in one
    transaction, from one connection of its own, keeps that lock off the statements that
    claim and record jobs. Announcements are best effort, like the progress they carry:
    while the database is away they are dropped, and the job row stays the truth.
    """

    def __init__(self, url: str, **connect: Any) -> None:
        self.url = url
        self._connect = connect
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="imagen-announcer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def announce(self, token: str) -> None:
        """Queue one announcement; announcements go out in the order they were queued."""
        self._queue.put(token)

    def close(self) -> None:
        """Send what is queued, then stop."""
        if self._thread.is_alive():
            self._queue.put(_CLOSE)
            self._thread.join()

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        closing = False
        while not closing:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            closing = any(item is _CLOSE for item in batch)
            payloads = [item for item in batch if item is not _CLOSE]
            if not payloads:
                continue
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True, **self._connect)
                conn.execute(_SEND, (payloads,))
            except psycopg.OperationalError as exc:
                log.debug(
                    "dropped %d announcement(s): the database is away (%s)", len(payloads), exc
                )
                conn = None
        if conn is not None:
            conn.close()

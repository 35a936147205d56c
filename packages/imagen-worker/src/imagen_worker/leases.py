"""Leases: the heartbeat that keeps a worker's jobs, and what happens when it can't.

A running job is held by a lease that expires ``lease_s`` after its last renewal; another
worker takes back a job whose lease expired (its worker is presumed dead) and runs it
again. So a worker that cannot renew a lease (cut off from the database, or found the job
taken) must stop acting on the job before that can happen, or the job runs twice at once.
:class:`Leases` renews every ``lease_s / 3`` and gives up a job when no renewal has been
confirmed for two of those periods, before the lease can have expired.

The worker itself holds a lease too, on its row in ``imagen.workers``: renewed with the same
heartbeat, it tells ``imagen serve`` and ``imagen jobs`` that a worker is there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from imagen_worker import queries
from imagen_worker.database import KEEPALIVE
from imagen_worker.events import event, first_line, log

__all__ = ["Leases"]


class Leases:
    """Renews the leases of the jobs running here; reports each one it can no longer hold.

    :param held: the ids of the jobs this worker runs now (called from the heartbeat).
    :param on_lost: called once with a job's id, from the heartbeat's thread, when its lease
        is gone (taken by another worker, or unconfirmed for too long).
    :param concurrency: the worker's slots, for its row in ``imagen.workers``; None keeps
        no row.
    """

    def __init__(
        self,
        url: str,
        worker: str,
        lease_s: float,
        held: Callable[[], list[int]],
        on_lost: Callable[[int, str], None],
        concurrency: int | None = None,
    ) -> None:
        self.url = url
        self.worker = worker
        self.lease_s = lease_s
        self.presence = (
            None
            if concurrency is None
            else {"worker": worker, "concurrency": concurrency, "lease": lease_s}
        )
        self.period = lease_s / 3
        self._held = held
        self._on_lost = on_lost
        self._lock = threading.Lock()
        self._confirmed: dict[int, float] = {}  # job id → when a renewal was last sent
        self._lost: set[int] = set()
        self._done = threading.Event()
        self._threads = [
            threading.Thread(target=self._beat, name="imagen-heartbeat", daemon=True),
            threading.Thread(target=self._watch, name="imagen-lease-watch", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def claimed(self, job_id: int) -> None:
        """Count the claim itself as a renewal of ``job_id``'s lease."""
        with self._lock:
            self._confirmed[job_id] = time.monotonic()
            self._lost.discard(job_id)

    def close(self) -> None:
        self._done.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(self.period + 5)

    def _beat(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._done.wait(self.period):
            with self._lock:
                ids = [job for job in self._held() if job not in self._lost]
            if not ids and self.presence is None:
                continue
            sent = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        self.url,
                        autocommit=True,
                        connect_timeout=max(2, int(self.period)),
                        # A black-holed connection fails within a period, not a minute.
                        tcp_user_timeout=int(self.period * 1000),
                        **KEEPALIVE,
                    )
                if self.presence is not None:
                    conn.execute(queries.PRESENT, self.presence)
                params = {"ids": ids, "worker": self.worker, "lease": self.lease_s}
                kept = (
                    {row[0] for row in conn.execute(queries.HEARTBEAT, params).fetchall()}
                    if ids
                    else set()
                )
            except psycopg.Error as exc:  # away, or refusing us: the watch decides when to let go
                if conn is not None:
                    conn.close()
                conn = None
                if ids:
                    event("heartbeat_failed", jobs=ids, reason=first_line(exc))
                else:  # the listener says so when the database is away
                    log.debug("the worker's presence was not renewed: %s", first_line(exc))
                continue
            for job in ids:
                if job in kept:
                    with self._lock:
                        self._confirmed[job] = max(sent, self._confirmed.get(job, sent))
                else:
                    self._lose(job, "another worker took it, or it ended elsewhere")
        if conn is not None:
            conn.close()

    def _watch(self) -> None:
        """Let go of jobs whose renewal has not been confirmed for two periods."""
        while not self._done.wait(min(1.0, self.period / 4)):
            now = time.monotonic()
            live = set(self._held())
            with self._lock:
                for job in [job for job in self._confirmed if job not in live]:
                    del self._confirmed[job]
                    self._lost.discard(job)
                late = {
                    job: now - at
                    for job, at in self._confirmed.items()
                    if now - at > 2 * self.period
                }
            for job, silent in late.items():
                self._lose(job, f"its lease could not be renewed for {silent:.0f} s")

    def _lose(self, job: int, reason: str) -> None:
        with self._lock:
            if job in self._lost:
                return
            self._lost.add(job)
        self._on_lost(job, reason)

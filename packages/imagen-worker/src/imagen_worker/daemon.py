"""The worker daemon: claims jobs, runs them through the pipeline, records the results.

One listener connection LISTENs on ``imagen_jobs`` and claims when a notification hints
that there is work (or every ``poll_s`` as a safety net); each claimed job runs in a thread
of a pool of ``concurrency`` with a connection of its own; :class:`~imagen_worker.leases.Leases`
keeps the leases of the jobs running here. A job whose worker died is taken back when its
lease expires and, if its backend reported an upstream run, resumes that run instead of
paying for it again.

Every slot either takes its job to a state that is recorded (done, failed, cancelled,
pending for a retry or a release) or the process stops, saying why: nothing a row, a
notification or a backend does may end a slot silently.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from imagen.cloud.settings import read_cloud
from imagen.config import Config
from imagen.pipeline import BackendPool
from imagen_worker import queries
from imagen_worker.announcer import Announcer
from imagen_worker.database import KEEPALIVE, configure_json
from imagen_worker.events import event, first_line, log
from imagen_worker.leases import Leases
from imagen_worker.notices import JOBS_CHANNEL, ProgressKey, job_event, read_progress_key
from imagen_worker.rows import request_from_row
from imagen_worker.slots import JobSlots, Running
from imagen_worker.usage import PostgresUsageSink

__all__ = ["Worker", "WorkerSettings", "request_from_row"]

_IGNORED_EVERY_S = 600.0  # at most one line about ignored notifications per ten minutes
_RELEASE_FOR_S = 15.0  # how long a stopping worker keeps trying to hand its jobs back


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker runs."""

    concurrency: int = 1
    poll_s: float = 5.0
    lease_s: float = 60.0
    grace_s: float = 30.0
    retry_base_s: float = 5.0
    retry_max_s: float = 600.0
    worker_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )


class Worker(JobSlots):
    """Runs the queue of one database until :meth:`stop` is called.

    :attr:`fatal` says why, when it stopped on its own (a failure it could not recover
    from); the process should then exit non-zero.
    """

    def __init__(self, config: Config, url: str, settings: WorkerSettings | None = None) -> None:
        self.config = config
        self.url = url
        self.settings = settings or WorkerSettings()
        self.pool = BackendPool(config)
        self.fatal: str | None = None
        self.stuck = 0  # job threads still running when the worker gave up waiting for them
        self.key: ProgressKey | None = None
        self._stop = threading.Event()
        self._hurry = threading.Event()  # a second stop: release running jobs now
        self._abort = threading.Event()  # statements still waiting for the database give up
        self._wake = threading.Event()
        self._retry_due = float("inf")
        self._channel = f"imagen_worker_{uuid.uuid4().hex}"  # this worker's own wake-ups
        self._running: dict[int, Running] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[psycopg.Connection] = []  # the job threads', closed at the end
        self._unclaimed = 0  # queue events that came while every slot was busy
        self._poll_alone = False  # the safety poll found jobs no notification announced
        self._ignored = 0  # notifications that were not ours
        self._ignored_logged = -_IGNORED_EVERY_S
        self._backoff = 0.5
        self.announcer = Announcer(url, **KEEPALIVE)
        self.leases = Leases(
            url,
            self.settings.worker_id,
            self.settings.lease_s,
            self._held,
            self._lease_lost,
            concurrency=self.settings.concurrency,
        )
        # Usage goes to this worker's own database, whatever else is configured.
        read_cloud(config)  # a cloud mistake stops the worker now, not every job later
        recording = config.section("usage")["record"]
        self.usage = PostgresUsageSink(url) if recording else None
        self.executor = ThreadPoolExecutor(
            self.settings.concurrency, thread_name_prefix="imagen-job"
        )

    # -- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; :meth:`run` then waits for running jobs (up to the grace period).

        A second call releases the running jobs at once. Safe from signal handlers.
        """
        if self._stop.is_set():
            self._hurry.set()
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Serve until stopped; reconnects when the database goes away."""
        self.leases.start()
        self.announcer.start()
        try:
            while not self._stop.is_set():
                try:
                    self._serve()
                except psycopg.OperationalError as exc:
                    self._pause("db_lost", exc)
                except psycopg.Error as exc:  # a statement refused: say so and carry on
                    self._pause("db_error", exc)
        except Exception as exc:  # noqa: BLE001 (a bug in the loop itself: stop, loudly)
            log.debug("the worker's loop failed", exc_info=True)
            self._fail(f"the worker's loop failed: {type(exc).__name__}: {first_line(exc)}")
        finally:
            self._shutdown()

    def _pause(self, name: str, exc: psycopg.Error) -> None:
        event(name, reconnect_in_s=self._backoff, reason=first_line(exc))
        self._stop.wait(self._backoff)
        self._backoff = min(self._backoff * 2, 30.0)

    def _fail(self, reason: str) -> None:
        if self.fatal is None:
            self.fatal = reason
            event("stopped", reason=reason)
        self.stop()

    # -- the listener --------------------------------------------------------------------------

    def _serve(self) -> None:
        with psycopg.connect(self.url, **KEEPALIVE, autocommit=True, row_factory=dict_row) as conn:
            configure_json(conn)
            if self.key is None:
                self.key = read_progress_key(conn)
            conn.execute(f"LISTEN {JOBS_CHANNEL}")  # before the catch-up claim: nothing slips by
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            conn.execute(queries.PRESENT, self.leases.presence)  # here: the heartbeat renews it
            self._backoff = 0.5  # healthy again: the next blip waits half a second, not 30
            event(
                "listening", worker=self.settings.worker_id, concurrency=self.settings.concurrency
            )
            next_poll = 0.0
            first = True  # the catch-up claim: what arrived while we were not listening
            while not self._stop.is_set():
                polling = time.monotonic() >= next_poll
                if polling:
                    self._recover(conn)
                    self._act_on_cancellations(conn)
                    next_poll = time.monotonic() + self.settings.poll_s
                claimed = self._claim(conn)
                if polling and not first:
                    self._check_notifications(claimed)
                first = False
                with self._lock:
                    due, self._retry_due = self._retry_due, float("inf")
                if due < next_poll:
                    self._wait(conn, due)
                    if time.monotonic() < due:  # woken early: keep the retry's wake-up
                        with self._lock:
                            self._retry_due = min(self._retry_due, due)
                else:
                    self._wait(conn, next_poll)

    def _check_notifications(self, claimed: list[dict[str, Any]]) -> None:
        """Say so when the safety poll finds new jobs that no notification announced."""
        missed = [
            row["id"]
            for row in claimed
            if row["attempts"] == 1 and row["run_after"] <= row["created_at"]
        ]
        if missed and not self._poll_alone:
            self._poll_alone = True
            event(
                "notify_missed",
                jobs=missed,
                poll_s=self.settings.poll_s,
                note="running on the safety poll alone: no notification announced these "
                "jobs (a disabled jobs_inserted trigger, or a transaction-mode pooler "
                "between the worker and PostgreSQL, drops them)",
            )

    def _wait(self, conn: psycopg.Connection, until: float) -> None:
        """Wait for a hint of work, a freed slot, a stop, or ``until``; act on cancellations.

        A notification is only a hint: an ``inserted`` one ends the wait so the caller
        claims, a ``cancel`` one makes the worker read which of its jobs someone asked to
        cancel. One that is not ours is counted and ignored. No query runs while the
        notifies() generator is open: psycopg queues notifications that arrive during
        other queries only while the generator is closed.
        """
        while not self._stop.is_set() and time.monotonic() < until:
            notes = list(conn.notifies(timeout=0.5, stop_after=1))
            if notes:  # a burst: take what else has arrived, and act on all of it once
                notes += conn.notifies(timeout=0)
            freed = work = cancel = False
            for note in notes:
                if note.channel == self._channel:
                    freed = True
                    continue
                kind = job_event(note.payload)
                if kind is None:
                    self._ignore(note.payload)
                elif kind == "cancel":
                    cancel = True
                else:
                    work = True
            if cancel:
                self._act_on_cancellations(conn)
            if work:
                if self._poll_alone:
                    self._poll_alone = False
                    event("notify_back")
                if self._free_slots() <= 0:
                    with self._lock:  # a job thread ending now claims it (see _end)
                        self._unclaimed += 1
                return
            if (freed or self._wake.is_set()) and self._free_slots() > 0:
                self._wake.clear()
                return

    def _ignore(self, payload: str) -> None:
        """Count a notification that is not ours; log it the first time and then rarely."""
        self._ignored += 1
        now = time.monotonic()
        if now - self._ignored_logged >= _IGNORED_EVERY_S:
            self._ignored_logged = now
            event(
                "notify_ignored",
                count=self._ignored,
                payload=payload[:80],
                note="notifications on imagen_jobs are only hints; this one is not one of "
                "imagen's, and anyone who can connect can send them",
            )

    def _free_slots(self) -> int:
        with self._lock:
            return self.settings.concurrency - len(self._running)

    def _held(self) -> list[int]:
        with self._lock:
            return list(self._running)

    def _claim(self, conn: psycopg.Connection) -> list[dict[str, Any]]:
        """Claim jobs for the free slots and start each in the thread pool."""
        slots = self._free_slots()
        if slots <= 0 or self._stop.is_set():
            return []
        params = {"worker": self.settings.worker_id, "lease": self.settings.lease_s, "limit": slots}
        rows = conn.execute(queries.CLAIM, params).fetchall()
        for row in rows:
            context = self._context_for(row)
            with self._lock:  # registered before its thread can look itself up
                future = self.executor.submit(self._run_chain, row, context)
                self._running[row["id"]] = Running(row["id"], context, future)
        return rows

    def _recover(self, conn: psycopg.Connection) -> None:
        for row in conn.execute(queries.RECOVER).fetchall():
            event("recovered", job=row["id"], status=row["status"])

    def _act_on_cancellations(self, conn: psycopg.Connection) -> None:
        """Cancel the jobs whose rows ask for it: pending ones at once, running ones here."""
        for row in conn.execute(queries.CANCEL_PENDING).fetchall():
            event("cancelled", job=row["id"], running=False)
        held = self._held()
        if not held:
            return
        params = {"ids": held, "worker": self.settings.worker_id}
        for row in conn.execute(queries.CANCEL_REQUESTED, params).fetchall():
            with self._lock:
                running = self._running.get(row["id"])
            if running is not None and not running.context.cancelled:
                event("cancelling", job=row["id"])
                running.context.cancel()

    def _lease_lost(self, job_id: int, reason: str) -> None:
        """Stop acting on a job another worker may run now; its upstream run goes on."""
        with self._lock:
            running = self._running.get(job_id)
            if running is None:
                return
            running.lost = reason
        event("lease_lost", job=job_id, reason=reason)
        running.context.detach()

    # -- shutdown ------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Let running jobs finish within the grace period, then detach and release the rest.

        A second stop cuts the grace period short. Released jobs go back to pending without
        counting the attempt; their upstream runs go on, and the next claim resumes them.
        """
        running = self._held()
        if running and not self._hurry.is_set():
            event(
                "stopping",
                jobs=running,
                grace_s=self.settings.grace_s,
                note="waiting for running jobs to finish; stop again (Ctrl-C) to release "
                "them at once",
            )
        deadline = time.monotonic() + self.settings.grace_s
        while self._held() and time.monotonic() < deadline and not self._hurry.wait(0.1):
            pass
        with self._lock:
            left = list(self._running.values())
        for job in left:
            job.context.detach()
        _, pending = wait_for_futures([job.future for job in left], timeout=30)
        self._abort.set()  # anything still waiting for the database gives up now
        if left:
            self._release([job.job_id for job in left if job.lost is None])
        self.stuck = len(pending)
        if self.stuck:
            event("stuck", threads=self.stuck, note="job threads that ignored cancellation")
        self.executor.shutdown(wait=not self.stuck, cancel_futures=True)
        self.announcer.close()
        if self.usage is not None:
            self.usage.close()
        self.leases.close()
        self._leave()
        for conn in self._connections:
            conn.close()
        self.pool.close()

    def _leave(self) -> None:
        """Remove this worker's row from imagen.workers (if the database is away, it expires)."""
        try:
            with psycopg.connect(self.url, **KEEPALIVE, autocommit=True, connect_timeout=2) as conn:
                conn.execute(queries.GONE, {"worker": self.settings.worker_id})
        except psycopg.Error as exc:
            log.debug("the worker's presence stays until it expires: %s", first_line(exc))

    def _release(self, ids: list[int]) -> None:
        """Hand ``ids`` back to the queue, trying for a while if the database is away."""
        if not ids:
            return
        deadline = time.monotonic() + _RELEASE_FOR_S
        delay = 0.5
        while True:
            try:
                with psycopg.connect(
                    self.url, **KEEPALIVE, autocommit=True, connect_timeout=5
                ) as conn:
                    rows = conn.execute(
                        queries.RELEASE, {"ids": ids, "worker": self.settings.worker_id}
                    ).fetchall()
                event("released", jobs=[row[0] for row in rows])
                return
            except psycopg.Error as exc:
                if time.monotonic() + delay > deadline:
                    event(
                        "release_failed",
                        jobs=ids,
                        reason=first_line(exc),
                        note=f"they stay held until their lease runs out (at most "
                        f"{self.settings.lease_s:g} s); then any worker takes them back",
                    )
                    return
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

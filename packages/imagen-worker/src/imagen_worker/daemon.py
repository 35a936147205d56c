"""The worker daemon: claims jobs, runs them through the pipeline, records the results.

One listener connection LISTENs on ``imagen_jobs`` and claims when a job arrives (or every
``poll_s`` as a safety net); each claimed job runs in a thread of a pool of
``concurrency`` with a connection of its own; a heartbeat extends the leases of the jobs
running here. A job whose worker died is taken back when its lease expires and, if its
backend reported an upstream run, resumes that run instead of paying for it again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from imagen import (
    Cancelled,
    Context,
    ImagenError,
    PermanentBackendError,
    Progress,
    Request,
    RunLostError,
    TransientBackendError,
)
from imagen.cloud.settings import read_cloud
from imagen.config import USAGE, Config
from imagen.pipeline import BackendPool, generate
from imagen_worker import queries
from imagen_worker.announcer import Announcer
from imagen_worker.cloud import check_synced, kept_images, sync_kept
from imagen_worker.database import KEEPALIVE
from imagen_worker.usage import PostgresUsageSink

__all__ = ["Worker", "WorkerSettings", "request_from_row"]

log = logging.getLogger("imagen")
_PROGRESS_EVERY_S = 0.5  # at most two progress writes a second per job
_WARNINGS = frozenset({"db_lost", "db_wait", "recovered", "notify_missed", "lease_lost"})
_BARE = re.compile(r"[\w.:/@-]+")  # logfmt values that need no quotes


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


def event(name: str, **fields: Any) -> None:
    """Log one worker event as one logfmt line: ``event=done job=12 images=2``."""
    level = logging.WARNING if name in _WARNINGS else logging.INFO
    if not log.isEnabledFor(level):
        return
    parts = [f"event={name}"]
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, str) and _BARE.fullmatch(value):
            text = value
        elif isinstance(value, bool | int | float):
            text = json.dumps(value)
        else:
            text = json.dumps(value, separators=(",", ":"), default=str)
        parts.append(f"{key}={text}")
    log.log(level, "%s", " ".join(parts))


def request_from_row(row: dict[str, Any]) -> Request:
    """The Request a job row asks for (RequestError when the row is impossible)."""
    options = row.get("options") or {}
    if not isinstance(options, dict):
        raise PermanentBackendError("options must be a JSON object")
    return Request(
        prompt=row["prompt"],
        negative_prompt=row.get("negative_prompt") or "",
        width=row.get("width"),
        height=row.get("height"),
        steps=row.get("steps"),
        seed=row.get("seed"),
        style=row.get("style"),
        count=row.get("count") or 1,
        options=options,
    )


@dataclass
class _Ending:
    """How a job ended: the statement that records it, and the event to log once it has."""

    query: str
    params: dict[str, Any]
    status: str  # the job's status once recorded
    event: str
    fields: dict[str, Any]
    retry_in_s: float | None = None

    @classmethod
    def finish(cls, job_id: int, status: str, error: str | None, **fields: Any) -> _Ending:
        params = {"id": job_id, "status": status, "error": error}
        return cls(queries.FINISH, params, status, status, {"error": error, **fields})


def _image_row(image: Any) -> dict[str, Any]:
    """A saved image as the DONE statement's JSON record."""
    record = image.record
    return {
        "local_path": str(image.path),
        "storage_bucket": (record.get("cloud") or {}).get("bucket"),
        "storage_location": (record.get("cloud") or {}).get("path"),
        "prompt": record.get("prompt"),
        "backend": record.get("backend"),
        "seed": record.get("image_seed") or record.get("seed"),
        "width": record.get("width"),
        "height": record.get("height"),
        "mime_type": image.mime_type,
        "metadata": record.get("metadata") or {},
    }


@dataclass
class _Running:
    job_id: int
    context: Context
    future: Future[None]


class Worker:
    """Runs the queue of one database until :meth:`stop` is called."""

    def __init__(self, config: Config, url: str, settings: WorkerSettings | None = None) -> None:
        self.config = config
        self.url = url
        self.settings = settings or WorkerSettings()
        self.pool = BackendPool(config)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._finished = threading.Event()
        self._retry_due = float("inf")
        self._channel = f"imagen_worker_{uuid.uuid4().hex}"  # this worker's own wake-ups
        self._running: dict[int, _Running] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[psycopg.Connection] = []  # the job threads', closed at the end
        self._unclaimed = 0  # queue events that came while every slot was busy
        self._poll_alone = False  # the safety poll found jobs no notification announced
        self.announcer = Announcer(url, **KEEPALIVE)
        # Usage goes to this worker's own database, whatever else is configured.
        read_cloud(config)  # a cloud mistake stops the worker now, not every job later
        recording = config.section_values("usage", USAGE)["record"]
        self.usage = PostgresUsageSink(url) if recording else None
        self.executor = ThreadPoolExecutor(
            self.settings.concurrency, thread_name_prefix="imagen-job"
        )

    # -- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; :meth:`run` then waits for running jobs (up to the grace period)."""
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Serve until stopped; reconnects when the database goes away."""
        heartbeat = threading.Thread(target=self._heartbeat, name="imagen-heartbeat", daemon=True)
        heartbeat.start()
        self.announcer.start()
        delay = 0.5
        try:
            while not self._stop.is_set():
                try:
                    self._serve()
                    delay = 0.5
                except psycopg.OperationalError as exc:
                    event("db_lost", reconnect_in_s=delay, reason=_first_line(exc))
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
        finally:
            self._shutdown()

    # -- the loop ----------------------------------------------------------------------------

    def _serve(self) -> None:
        with psycopg.connect(self.url, **KEEPALIVE, autocommit=True, row_factory=dict_row) as conn:
            conn.execute("LISTEN imagen_jobs")  # before the catch-up claim: nothing slips by
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            event(
                "listening", worker=self.settings.worker_id, concurrency=self.settings.concurrency
            )
            next_poll = 0.0
            first = True  # the catch-up claim: what arrived while we were not listening
            while not self._stop.is_set():
                polling = time.monotonic() >= next_poll
                if polling:
                    self._recover(conn)
                    self._cancel_pending(conn)
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
        """Wait for a new job, a freed slot, a stop, or ``until``; act on cancellations.

        A job thread announces a freed slot on this worker's own channel, so the wait ends
        at once. No query runs while the notifies() generator is open: psycopg queues
        notifications that arrive during other queries only while the generator is closed.
        """
        while not self._stop.is_set() and time.monotonic() < until:
            items = []
            freed = False
            for note in conn.notifies(timeout=0.5, stop_after=1):
                if note.channel == self._channel:
                    freed = True
                    continue
                with contextlib.suppress(ValueError):
                    items.append(json.loads(note.payload))
            for item in items:
                if item.get("event") == "cancel":
                    self._cancel(conn, int(item["id"]))
            if any(item.get("event") != "cancel" for item in items):  # inserted, released…
                if self._poll_alone:
                    self._poll_alone = False
                    event("notify_back")
                if self._free_slots() <= 0:
                    with self._lock:  # a job thread ending now claims it (see _next)
                        self._unclaimed += 1
                return
            if (freed or self._wake.is_set()) and self._free_slots() > 0:
                self._wake.clear()
                return

    def _free_slots(self) -> int:
        with self._lock:
            return self.settings.concurrency - len(self._running)

    def _claim(self, conn: psycopg.Connection) -> list[dict[str, Any]]:
        """Claim jobs for the free slots and start each in the thread pool."""
        slots = self._free_slots()
        if slots <= 0 or self._stop.is_set():
            return []
        rows = self._claim_rows(conn, slots)
        for row in rows:
            context = self._context_for(row)
            with self._lock:  # registered before its thread can look itself up
                future = self.executor.submit(self._run_chain, row, context)
                self._running[row["id"]] = _Running(row["id"], context, future)
        return rows

    def _claim_rows(self, conn: psycopg.Connection, limit: int) -> list[dict[str, Any]]:
        params = {"worker": self.settings.worker_id, "lease": self.settings.lease_s, "limit": limit}
        return conn.execute(queries.CLAIM, params).fetchall()

    def _context_for(self, row: dict[str, Any]) -> Context:
        event(
            "claimed",
            job=row["id"],
            attempt=row["attempts"],
            max_attempts=row["max_attempts"],
            resume=row.get("upstream_run_id"),
        )
        return Context(
            on_progress=self._progress_writer(row["id"]),
            on_run_id=self._run_id_writer(row["id"]),
        )

    def _recover(self, conn: psycopg.Connection) -> None:
        for row in conn.execute(queries.RECOVER).fetchall():
            event("recovered", job=row["id"], status=row["status"])

    def _cancel_pending(self, conn: psycopg.Connection) -> None:
        for row in conn.execute(queries.CANCEL_PENDING).fetchall():
            event("cancelled", job=row["id"], running=False)

    def _cancel(self, conn: psycopg.Connection, job_id: int) -> None:
        with self._lock:
            running = self._running.get(job_id)
        if running is not None:
            event("cancelling", job=job_id)
            running.context.cancel()
        else:
            self._cancel_pending(conn)

    # -- a job ---------------------------------------------------------------------------------

    def _db(self, work: Any, *, what: str, patient: bool = True) -> Any:
        """Run ``work(conn)`` on this thread's connection, reconnecting if the database went away.

        ``patient`` work (a job's results) is retried with backoff until it succeeds,
        however long the database is gone: a result is never dropped. Other work (progress)
        gives up at once.
        """
        delay = 0.5
        while True:
            try:
                return work(self._connection())
            except psycopg.OperationalError as exc:
                self._local.conn = None
                if not patient:
                    log.debug("%s skipped: the database is away (%s)", what, exc)
                    return None
                event("db_wait", what=what, retry_in_s=delay, reason=_first_line(exc))
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _connection(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.url, **KEEPALIVE, autocommit=True, row_factory=dict_row)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _run_chain(self, row: dict[str, Any] | None, context: Context) -> None:
        """Run a job, then the next ones this thread can claim, until the queue is empty.

        How a job ended and the claim of the next one go in one statement: under a backlog a
        job costs one round trip and one commit, and the slot never goes back to the listener.
        """
        while row is not None:
            ending = self._execute(row, context)
            row, context = self._end(row, ending)

    def _end(
        self, row: dict[str, Any], ending: _Ending | None
    ) -> tuple[dict[str, Any] | None, Context]:
        """Record how ``row`` ended; hand this thread's slot to the next pending job, or free it."""
        job_id = row["id"]
        with self._lock:
            unclaimed = self._unclaimed
        claim = not self._stop.is_set()
        if ending is not None:
            recorded, rows = self._db(
                lambda conn: self._record_and_claim(conn, ending, claim),
                what=f"job {job_id}: recording how it ended",
            )
            if recorded:
                self.announcer.announce({"id": job_id, "status": ending.status})
                event(ending.event, job=job_id, **ending.fields)
                if ending.retry_in_s is not None:  # wake up to claim it again when it is due
                    with self._lock:
                        self._retry_due = min(self._retry_due, time.monotonic() + ending.retry_in_s)
            else:
                event("lease_lost", job=job_id, ended=ending.event)
        else:
            rows = None
        with self._lock:
            current = self._running.pop(job_id)
            if rows:
                row = rows[0]
                context = self._context_for(row)
                self._running[row["id"]] = _Running(row["id"], context, current.future)
                return row, context
            missed = self._unclaimed != unclaimed
        self._wake.set()
        if missed:  # a job arrived while this slot was busy: wake the listener to claim it
            self._db(
                lambda conn: conn.execute("SELECT pg_notify(%s, '')", (self._channel,)),
                what="announcing a free slot",
                patient=False,
            )
        return None, current.context

    def _record_and_claim(
        self, conn: psycopg.Connection, ending: _Ending, claim: bool
    ) -> tuple[bool, list[dict[str, Any]]]:
        params = {"worker": self.settings.worker_id, **ending.params}
        if not claim:
            return bool(conn.execute(queries.recording(ending.query), params).fetchall()), []
        params.update(lease=self.settings.lease_s, limit=1)
        rows = conn.execute(queries.recording_then_claiming(ending.query), params).fetchall()
        recorded = rows[0].pop("recorded") > 0
        return recorded, [row for row in rows if row["id"] is not None]

    def _execute(self, row: dict[str, Any], context: Context) -> _Ending | None:
        """Run one job; return how it ended (None: released at shutdown, nothing to record)."""
        job_id = row["id"]
        try:
            outcome = self._generate(row, context)
        except Cancelled:
            if self._stop.is_set() and not row.get("cancel_requested"):
                return None  # shutting down: released to pending by _shutdown
            return _Ending.finish(job_id, "cancelled", None, running=True)
        except TransientBackendError as exc:
            if row["attempts"] < row["max_attempts"]:
                delay = exc.retry_after or min(
                    self.settings.retry_max_s,
                    self.settings.retry_base_s * 2 ** (row["attempts"] - 1),
                )
                return _Ending(
                    queries.RETRY,
                    {"id": job_id, "error": str(exc), "delay": delay},
                    "pending",
                    "retried",
                    {"delay_s": round(delay, 1), "error": str(exc)},
                    retry_in_s=delay,
                )
            error = f"gave up after {row['attempts']} attempts: {exc}"
            return _Ending.finish(job_id, "failed", error)
        except ImagenError as exc:
            return _Ending.finish(job_id, "failed", str(exc))
        except Exception as exc:
            log.debug("job %s failed", job_id, exc_info=True)
            return _Ending.finish(job_id, "failed", f"internal error: {type(exc).__name__}: {exc}")
        return _Ending(
            queries.DONE,
            {"id": job_id, "images": Jsonb([_image_row(image) for image in outcome.images])},
            "done",
            "done",
            {"images": len(outcome.images), "duration_s": round(outcome.duration_s, 3)},
        )

    def _run_id_writer(self, job_id: int) -> Any:
        def write(run_id: str) -> None:  # recorded at once: a crash after this resumes the run
            self._db(
                lambda conn: conn.execute(queries.SET_RUN_ID, (run_id, job_id)),
                what=f"job {job_id}: recording its run id",
            )

        return write

    def _progress_writer(self, job_id: int) -> Any:
        last_write = [0.0]

        def write(progress: Progress) -> None:
            now = time.monotonic()
            if progress.kind == "step" and now - last_write[0] < _PROGRESS_EVERY_S:
                return
            last_write[0] = now
            state = {
                "kind": progress.kind,
                "current": progress.current,
                "total": progress.total,
                "message": progress.message,
            }

            self._db(
                lambda conn: conn.execute(
                    queries.SET_PROGRESS, (json.dumps({"last": state}), job_id)
                ),
                what=f"job {job_id}: progress",
                patient=False,
            )
            self.announcer.announce({"id": job_id, **state})

        return write

    def _generate(self, row: dict[str, Any], context: Context) -> Any:
        job_id = row["id"]
        kept = kept_images(row)
        if kept is not None:  # generated and paid for already: only the upload is left
            return sync_kept(self.config, kept, row["owner"])
        request = request_from_row(row)
        labels = {"entry": "worker", "job_id": job_id, "owner": row["owner"]}
        resume = row.get("upstream_run_id")

        def run(resume: str | None) -> Any:
            return generate(
                self.config,
                request,
                backend=row.get("backend"),
                context=context,
                pool=self.pool,
                labels=labels,
                resume=resume,
                usage=self.usage,
            )

        try:
            outcome = run(resume)
        except RunLostError as exc:
            # The earlier attempt's run is gone upstream: only now is a new one paid for.
            self._set_note(job_id, f"resubmitted: {exc}")
            outcome = run(None)
        else:
            if resume is not None:
                can_resume = self.pool.get(row.get("backend")).supports_resume
                self._set_note(
                    job_id, "resumed" if can_resume else "resubmitted: the backend cannot resume"
                )
        try:
            check_synced(outcome)
        except TransientBackendError:
            saved = {"saved": [str(image.path) for image in outcome.images]}
            self._db(
                lambda conn: conn.execute(queries.SET_PROGRESS, (json.dumps(saved), job_id)),
                what=f"job {job_id}: keeping its images for the next attempt",
            )
            raise
        return outcome

    def _set_note(self, job_id: int, note: str) -> None:
        self._db(
            lambda conn: conn.execute(queries.SET_PROGRESS, (json.dumps({"resume": note}), job_id)),
            what=f"job {job_id}: recording the resume",
        )

    # -- leases and shutdown -----------------------------------------------------------------------

    def _heartbeat(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._finished.wait(self.settings.lease_s / 3):
            with self._lock:
                ids = list(self._running)
            if not ids:
                continue
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, **KEEPALIVE, autocommit=True)
                conn.execute(
                    queries.HEARTBEAT,
                    {"ids": ids, "worker": self.settings.worker_id, "lease": self.settings.lease_s},
                )
            except psycopg.OperationalError:
                conn = None  # the database is away; the next beat reconnects
        if conn is not None:
            conn.close()

    def _shutdown(self) -> None:
        """Let running jobs finish within the grace period, then cancel and release the rest."""
        deadline = time.monotonic() + self.settings.grace_s
        with self._lock:
            running = list(self._running.values())
        for job in running:
            _settle(job.future, deadline - time.monotonic())
        with self._lock:
            left = list(self._running.values())
        for job in left:
            job.context.cancel()
        for job in left:
            _settle(job.future, 30)
        if left:
            with psycopg.connect(self.url, **KEEPALIVE, autocommit=True) as conn:
                conn.execute(
                    queries.RELEASE,
                    {"ids": [job.job_id for job in left], "worker": self.settings.worker_id},
                )
            event("released", jobs=[job.job_id for job in left])
        self.executor.shutdown(wait=True)
        self.announcer.close()
        if self.usage is not None:
            self.usage.close()
        self._finished.set()
        for conn in self._connections:
            conn.close()
        self.pool.close()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def _settle(future: Future[None], timeout: float) -> None:
    """Wait up to ``timeout`` seconds for ``future``; its own errors were already recorded."""
    with contextlib.suppress(Exception):  # a timeout, or an error _execute recorded
        future.result(timeout=max(0.0, timeout))

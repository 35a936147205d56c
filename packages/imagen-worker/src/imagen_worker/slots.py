"""The job threads' half of the worker: run a job, record how it ended, claim the next.

Each slot of the worker's pool runs :meth:`JobSlots._run_chain`: a job, then the next one
its own statement claimed, until the queue is empty. Whatever happens, the job's end is
recorded or the slot says loudly why it could not be, and the worker stops.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from imagen import Context, ImagenError, RunLostError, TransientBackendError
from imagen.pipeline import generate
from imagen_worker import queries
from imagen_worker.cloud import check_synced, kept_images, sync_kept
from imagen_worker.database import KEEPALIVE, configure_json
from imagen_worker.endings import Ending, failure, success
from imagen_worker.events import event, first_line, log
from imagen_worker.job_inputs import fetch_inputs
from imagen_worker.progress import progress_writer
from imagen_worker.rows import request_from_row

if TYPE_CHECKING:
    from imagen.config import Config
    from imagen.pipeline import BackendPool
    from imagen_worker.announcer import Announcer
    from imagen_worker.daemon import WorkerSettings
    from imagen_worker.leases import Leases
    from imagen_worker.notices import ProgressKey
    from imagen_worker.usage import PostgresUsageSink

__all__ = ["JobSlots", "Running"]


@dataclass
class Running:
    """A job running in a slot here."""

    job_id: int
    context: Context
    future: Future[None]
    lost: str | None = None  # why its lease is gone, once it is


class _GaveUp(Exception):
    """The database stayed away until the worker stopped: the statement was not run."""


class JobSlots:
    """What a job thread does; :class:`~imagen_worker.daemon.Worker` is the listener half."""

    config: Config
    url: str
    settings: WorkerSettings
    pool: BackendPool
    usage: PostgresUsageSink | None
    _lock: threading.Lock
    _running: dict[int, Running]
    _local: threading.local
    _connections: list[psycopg.Connection]
    _stop: threading.Event
    _abort: threading.Event
    _wake: threading.Event
    _unclaimed: int
    _retry_due: float
    _channel: str
    key: ProgressKey | None
    announcer: Announcer
    leases: Leases

    def _fail(self, reason: str) -> None:
        raise NotImplementedError  # the worker stops itself, saying why

    def _context_for(self, row: dict[str, Any]) -> Context:
        self.leases.claimed(row["id"])
        event(
            "claimed",
            job=row["id"],
            attempt=row["attempts"],
            max_attempts=row["max_attempts"],
            resume=row.get("upstream_run_id"),
        )
        return Context(
            on_progress=progress_writer(self, row["id"]),
            on_run_id=self._run_id_writer(row["id"]),
        )

    def announce(self, job_id: int) -> None:
        """Tell whoever follows job ``job_id`` (imagen serve) to look at it again."""
        if self.key is not None:
            self.announcer.announce(self.key.token(job_id))

    # -- a job ---------------------------------------------------------------------------------

    def db(
        self,
        work: Any,
        *,
        what: str,
        patient: bool = True,
        context: Context | None = None,
        give_up: Callable[[], bool] | None = None,
    ) -> Any:
        """Run ``work(conn)`` on this thread's connection, reconnecting if the database went away.

        Away means the connection could not be made or broke; a statement the database
        refused on a working connection raises, as any other error does.

        ``patient`` work (a job's results) is retried with backoff until it succeeds, however
        long the database is gone, so a result is never dropped; it gives up
        (:class:`_GaveUp`) only when the worker stops for good or ``give_up()`` says so, and
        with ``context`` it stops when that job is cancelled or detached. Other work
        (progress) gives up at once.
        """
        delay = 0.5
        while True:
            conn = None
            try:
                conn = self._connection()
                return work(conn)
            except psycopg.OperationalError as exc:
                if conn is not None and not conn.broken and exc.sqlstate is not None:
                    raise  # refused by a database that is there (a full disk): not "away"
                self._local.conn = None
                if not patient:
                    log.debug("%s skipped: the database is away (%s)", what, exc)
                    return None
                event("db_wait", what=what, retry_in_s=delay, reason=first_line(exc))
                for _ in range(int(delay * 10)):
                    if self._abort.is_set() or (give_up is not None and give_up()):
                        raise _GaveUp(what) from exc
                    if context is not None:
                        context.check()
                    time.sleep(0.1)
                delay = min(delay * 2, 30.0)

    def _connection(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.url, **KEEPALIVE, autocommit=True, row_factory=dict_row)
            configure_json(conn)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _run_chain(self, row: dict[str, Any] | None, context: Context) -> None:
        """Run a job, then the next ones this thread can claim, until the queue is empty.

        How a job ended and the claim of the next one go in one statement: under a backlog a
        job costs one round trip and one commit, and the slot never goes back to the listener.
        """
        try:
            while row is not None:
                ending = self._execute(row, context)
                row, context = self._end(row, ending)
        except BaseException as exc:  # noqa: BLE001 (a bug, or an end refused every way)
            job_id = row["id"] if row is not None else None
            log.debug("job thread failed on job %s", job_id, exc_info=True)
            event("slot_failed", job=job_id, error=f"{type(exc).__name__}: {first_line(exc)}")
            with self._lock:  # its lease runs out, and recovery takes the job back
                self._running.pop(job_id, None)
            self._fail(f"a job thread failed on job {job_id}: {type(exc).__name__}")

    def _execute(self, row: dict[str, Any], context: Context) -> Ending | None:
        """Run one job; how it ended (None: nothing to record now, it was released or lost)."""
        job_id = row["id"]
        try:
            outcome = self._generate(row, context)
        except Exception as exc:  # noqa: BLE001 (whatever it was, the job ends recorded)
            if self._lost(job_id):
                return None
            if not isinstance(exc, ImagenError):
                log.debug("job %s failed", job_id, exc_info=True)
            return failure(
                row,
                exc,
                retry_base_s=self.settings.retry_base_s,
                retry_max_s=self.settings.retry_max_s,
                stopping=self._stop.is_set(),
            )
        ending = success(job_id, outcome)
        if self._lost(job_id):  # another worker may be making these very images
            ending.remove_images()
            return None
        return ending

    def _lost(self, job_id: int) -> str | None:
        with self._lock:
            running = self._running.get(job_id)
        return running.lost if running is not None else None

    def _end(
        self, row: dict[str, Any], ending: Ending | None
    ) -> tuple[dict[str, Any] | None, Context]:
        """Record how ``row`` ended; hand this thread's slot to the next pending job, or free it."""
        job_id = row["id"]
        with self._lock:
            unclaimed = self._unclaimed
        claim = not self._stop.is_set()
        rows: list[dict[str, Any]] = []
        lost = self._lost(job_id)
        if lost is not None:
            event("abandoned", job=job_id, reason=lost)
        elif ending is not None:
            rows = self._record(job_id, ending, claim)
        with self._lock:
            current = self._running.pop(job_id)
            if rows:
                row = rows[0]
                context = self._context_for(row)
                self._running[row["id"]] = Running(row["id"], context, current.future)
                return row, context
            missed = self._unclaimed != unclaimed
        self._wake.set()
        if missed:  # a job arrived while this slot was busy: wake the listener to claim it
            self.db(
                lambda conn: conn.execute("SELECT pg_notify(%s, '')", (self._channel,)),
                what="announcing a free slot",
                patient=False,
            )
        return None, current.context

    def _record(self, job_id: int, ending: Ending, claim: bool) -> list[dict[str, Any]]:
        """Record ``ending`` (and claim the next job); the jobs claimed.

        The database may refuse the statement itself (a value it cannot store, a row changed
        under us): the job then fails saying so, its images removed, and the slot goes on.
        While the database is away it keeps trying, unless the job's lease is lost meanwhile
        (another worker may be running it: this ending must not count) or the worker stops.
        """
        what = f"job {job_id}: recording how it ended"

        def record(ending: Ending, claim: bool) -> tuple[bool, list[dict[str, Any]]]:
            return self.db(  # type: ignore[no-any-return]
                lambda c: self._record_and_claim(c, ending, claim),
                what=what,
                give_up=lambda: self._lost(job_id) is not None,
            )

        try:
            try:
                recorded, rows = record(ending, claim)
            except psycopg.Error as exc:
                event("not_recorded", job=job_id, ended=ending.event, reason=first_line(exc))
                ending.remove_images()
                reason = f"its end could not be recorded: {first_line(exc)}"
                ending = Ending.finish(job_id, "failed", reason, "internal")
                try:
                    recorded, rows = record(ending, claim)
                except psycopg.Error:  # then in words the database cannot refuse
                    reason = "its end could not be recorded"
                    ending = Ending.finish(job_id, "failed", reason, "internal")
                    recorded, rows = record(ending, False)
        except _GaveUp:
            ending.remove_images()
            reason = self._lost(job_id) or "the database stayed away until the worker stopped"
            event("not_recorded", job=job_id, ended=ending.event, reason=reason)
            return []
        if not recorded:  # the lease was gone: another worker has the job now
            ending.remove_images()
            event("lease_lost", job=job_id, ended=ending.event, reason="found it taken at the end")
            return rows
        self.announce(job_id)
        event(ending.event, job=job_id, **ending.fields)
        if ending.retry_in_s is not None:  # wake up to claim it again when it is due
            with self._lock:
                self._retry_due = min(self._retry_due, time.monotonic() + ending.retry_in_s)
        return rows

    def _record_and_claim(
        self, conn: psycopg.Connection, ending: Ending, claim: bool
    ) -> tuple[bool, list[dict[str, Any]]]:
        params = {"worker": self.settings.worker_id, **ending.params}
        if not claim:
            return bool(conn.execute(queries.recording(ending.query), params).fetchall()), []
        params.update(lease=self.settings.lease_s, limit=1)
        rows = conn.execute(queries.recording_then_claiming(ending.query), params).fetchall()
        recorded = rows[0].pop("recorded") > 0
        return recorded, [row for row in rows if row["id"] is not None]

    def _run_id_writer(self, job_id: int) -> Any:
        def write(run_id: str) -> None:  # recorded at once: a crash after this resumes the run
            self.db(
                lambda conn: conn.execute(queries.SET_RUN_ID, (run_id, job_id)),
                what=f"job {job_id}: recording its run id",
                context=self._context_of(job_id),
            )

        return write

    def _context_of(self, job_id: int) -> Context | None:
        with self._lock:
            running = self._running.get(job_id)
        return running.context if running is not None else None

    def _generate(self, row: dict[str, Any], context: Context) -> Any:
        job_id = row["id"]
        kept = kept_images(row)
        if kept is not None:  # generated and paid for already: only the upload is left
            return sync_kept(self.config, kept, row["owner"])
        request = request_from_row(row)
        if not row.get("inputs"):  # most jobs: no directory to make and remove
            request = fetch_inputs(self.config, row, request, None)
            return self._generate_request(row, request, context)
        with tempfile.TemporaryDirectory(prefix=f"imagen-job-{job_id}-") as scratch:
            request = fetch_inputs(self.config, row, request, Path(scratch))
            return self._generate_request(row, request, context)

    def _generate_request(self, row: dict[str, Any], request: Any, context: Context) -> Any:
        job_id = row["id"]
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
                keep_partial=False,
            )

        try:
            outcome = run(resume)
        except RunLostError as exc:
            # The earlier attempt's run is gone upstream: only now is a new one paid for.
            self._set_note(job_id, f"resubmitted: {exc}", context)
            outcome = run(None)
        else:
            if resume is not None:
                can_resume = self.pool.get(row.get("backend")).supports_resume
                self._set_note(
                    job_id,
                    "resumed" if can_resume else "resubmitted: the backend cannot resume",
                    context,
                )
        try:
            check_synced(outcome)
        except TransientBackendError:
            saved = {"saved": [str(image.path) for image in outcome.images]}
            self.db(
                lambda conn: conn.execute(queries.SET_PROGRESS, (json.dumps(saved), job_id)),
                what=f"job {job_id}: keeping its images for the next attempt",
                context=context,
            )
            raise
        return outcome

    def _set_note(self, job_id: int, note: str, context: Context) -> None:
        self.db(
            lambda conn: conn.execute(queries.SET_PROGRESS, (json.dumps({"resume": note}), job_id)),
            what=f"job {job_id}: recording the resume",
            context=context,
        )

"""Who will run a job: the workers there now (``imagen.workers``), and a job's place in line.

Each worker keeps a row in ``imagen.workers`` while it runs, renewed with its heartbeat
(:mod:`imagen_worker.leases`) and removed when it stops; a worker that died stops counting
once that row's lease has expired. ``imagen serve`` and ``imagen jobs`` read it to say so
when nobody would run a job, instead of leaving it pending in silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagen_worker import queries

__all__ = ["NO_WORKER", "NO_WORKER_FOR_JOBS", "Fleet", "fleet", "queue_position"]

_START_ONE = "until one starts (imagen worker, or imagen serve --with-worker)"
NO_WORKER = f"no worker is running on this database: the job waits in the queue {_START_ONE}"
NO_WORKER_FOR_JOBS = f"no worker is running on this database: jobs wait in the queue {_START_ONE}"


@dataclass(frozen=True)
class Fleet:
    """The workers there now."""

    workers: int
    slots: int  # jobs they run at once between them

    @classmethod
    def from_row(cls, row: Any) -> Fleet:
        values = row if isinstance(row, dict) else {"workers": row[0], "slots": row[1]}
        return cls(int(values["workers"]), int(values["slots"]))


def fleet(conn: Any) -> Fleet:
    """The workers running on ``conn``'s database (read with ``conn``'s own rights)."""
    return Fleet.from_row(conn.execute(queries.WORKERS).fetchone())


def queue_position(conn: Any, job_id: int) -> int | None:
    """Job ``job_id``'s place in the queue (1: claimed next); None when it is not pending."""
    row = conn.execute(queries.QUEUE_POSITION, {"id": job_id}).fetchone()
    if row is None:
        return None
    return int(row["position"] if isinstance(row, dict) else row[0])

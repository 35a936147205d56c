"""A running job's progress: written to its row at most twice a second, and announced."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from imagen import Progress
from imagen_worker import queries
from imagen_worker.rows import clean_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from imagen_worker.slots import JobSlots

__all__ = ["progress_writer"]

_EVERY_S = 0.5  # at most two progress writes a second per job


def progress_writer(worker: JobSlots, job_id: int) -> Callable[[Progress], None]:
    """The context's progress callback for job ``job_id``: best effort, never blocking long."""
    last_write = [0.0]

    def write(progress: Progress) -> None:
        now = time.monotonic()
        if progress.kind == "step" and now - last_write[0] < _EVERY_S:
            return
        last_write[0] = now
        state = {
            "kind": progress.kind,
            "current": progress.current,
            "total": progress.total,
            "message": clean_text(progress.message, 500),
        }
        worker.db(
            lambda conn: conn.execute(queries.SET_PROGRESS, (json.dumps({"last": state}), job_id)),
            what=f"job {job_id}: progress",
            patient=False,
        )
        worker.announce(job_id)

    return write

"""How a job ended, as the statement that records it: done, retried, failed, cancelled.

:func:`ending_for` turns what running a job raised (or returned) into an :class:`Ending`;
nothing a backend or a row can do makes it raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

from imagen import (
    BudgetExceededError,
    Cancelled,
    ConfigError,
    ImagenError,
    OutputError,
    RequestError,
    TransientBackendError,
)
from imagen_worker import queries
from imagen_worker.rows import clean_text, image_row

__all__ = ["Ending", "failure", "success"]


@dataclass
class Ending:
    """The statement that records how a job ended, and the event to log once it has.

    :param outcome: the pipeline's outcome when the job made images: they are removed
        again if the ending cannot be recorded (a job's images are all recorded or none
        are kept).
    """

    query: str
    params: dict[str, Any]
    status: str  # the job's status once recorded
    event: str
    fields: dict[str, Any]
    retry_in_s: float | None = None
    outcome: Any = field(default=None, repr=False)

    @classmethod
    def finish(
        cls, job_id: int, status: str, error: str | None, kind: str | None, **fields: Any
    ) -> Ending:
        """Failed or cancelled, for good."""
        text = None if error is None else clean_text(error)
        params = {"id": job_id, "status": status, "error": text, "kind": kind}
        return cls(queries.FINISH, params, status, status, {"error": text, **fields})

    def remove_images(self) -> None:
        """Delete the images this ending would have recorded (and their sidecars)."""
        for image in getattr(self.outcome, "images", None) or []:
            image.remove()


def success(job_id: int, outcome: Any) -> Ending:
    """A job that made its images: they and its "done" are recorded in one statement."""
    images = [image_row(image) for image in outcome.images]
    return Ending(
        queries.DONE,
        {"id": job_id, "images": Jsonb(images)},
        "done",
        "done",
        {"images": len(images), "duration_s": round(outcome.duration_s, 3)},
        outcome=outcome,
    )


_KINDS: tuple[tuple[type[ImagenError], str], ...] = (
    (RequestError, "request"),
    (BudgetExceededError, "budget"),
    (ConfigError, "config"),
    (OutputError, "output"),
)


def failure(
    row: dict[str, Any],
    exc: BaseException,
    *,
    retry_base_s: float,
    retry_max_s: float,
    stopping: bool,
) -> Ending | None:
    """How ``row``'s job ended when running it raised ``exc``; None: release it, unrecorded."""
    job_id = row["id"]
    if isinstance(exc, Cancelled):
        if stopping and not row.get("cancel_requested"):
            return None  # shutting down: released to pending
        return Ending.finish(job_id, "cancelled", None, None, running=True)
    if isinstance(exc, TransientBackendError):
        if row["attempts"] < row["max_attempts"]:
            delay = exc.retry_after or min(retry_max_s, retry_base_s * 2 ** (row["attempts"] - 1))
            error = clean_text(str(exc))
            return Ending(
                queries.RETRY,
                {"id": job_id, "error": error, "delay": delay},
                "pending",
                "retried",
                {"delay_s": round(delay, 1), "error": error},
                retry_in_s=delay,
            )
        error = f"gave up after {row['attempts']} attempts: {exc}"
        return Ending.finish(job_id, "failed", error, "transient")
    if isinstance(exc, ImagenError):
        kind = next((name for cls, name in _KINDS if isinstance(exc, cls)), "backend")
        return Ending.finish(job_id, "failed", str(exc), kind)
    return Ending.finish(
        job_id, "failed", f"internal error: {type(exc).__name__}: {exc}", "internal"
    )

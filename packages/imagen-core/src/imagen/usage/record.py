"""What one generation used and cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from imagen.errors import BudgetExceededError, Cancelled

if TYPE_CHECKING:
    from imagen.pipeline import Outcome, Run

__all__ = ["UsageRecord", "usage_record"]


@dataclass(frozen=True)
class UsageRecord:
    """One generation: who ran what where, how many images, how long, for how much.

    ``cost_usd`` is the adapter's own figure and None when it gave none: never a guess.
    ``status`` is ``done``, ``failed``, ``cancelled``, or ``refused`` by a spending cap
    (``reserved`` marks a running generation's hold, never a finished one).
    """

    at: datetime
    backend: str
    backend_type: str
    status: str
    owner: str | None = None
    job_id: int | None = None
    model: str | None = None
    images: int = 0
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    duration_s: float | None = None
    cost_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (``at`` in ISO 8601, UTC)."""
        data = asdict(self)
        data["at"] = self.at.astimezone(UTC).isoformat()
        return data


def usage_record(run: Run, outcome: Outcome | None, error: BaseException | None) -> UsageRecord:
    """The record of a finished run (``outcome`` when it succeeded, else ``error``)."""
    metadata = outcome.metadata if outcome is not None else {}
    cost = metadata.get("cost_usd")
    if outcome is not None:
        status = "done"
    elif isinstance(error, Cancelled):
        status = "cancelled"
    elif isinstance(error, BudgetExceededError):
        status = "refused"
    else:
        status = "failed"
    return UsageRecord(
        at=run.started,
        backend=run.backend_name,
        backend_type=run.backend_type,
        status=status,
        owner=run.labels.get("owner"),
        job_id=run.labels.get("job_id"),
        model=metadata.get("model"),
        images=len(outcome.images) if outcome is not None else 0,
        width=run.request.width,
        height=run.request.height,
        steps=run.request.steps,
        duration_s=round(outcome.duration_s, 3) if outcome is not None else None,
        cost_usd=float(cost)
        if isinstance(cost, int | float) and not isinstance(cost, bool)
        else None,
    )

"""Adding usage up: spend and counts per day, backend, model, owner or status."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any

from imagen.usage.record import UsageRecord

__all__ = ["GROUPINGS", "summarize"]

GROUPINGS = ("day", "backend", "model", "owner", "status")


def _key(record: UsageRecord, by: str) -> str:
    if by == "day":
        return record.at.astimezone(UTC).date().isoformat()
    value = getattr(record, by)
    return "" if value is None else str(value)


def summarize(records: Iterable[UsageRecord], by: Sequence[str]) -> list[dict[str, Any]]:
    """One row per distinct ``by`` values, in order: generations, images, known cost.

    ``cost_usd`` adds up the costs adapters reported; ``unpriced`` counts the generations
    without one, so a total is never mistaken for complete when it is not.
    """
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for record in records:
        key = tuple(_key(record, name) for name in by)
        row = groups.setdefault(
            key,
            {**dict(zip(by, key, strict=True)), "generations": 0, "images": 0, "failed": 0,
             "cost_usd": 0.0, "unpriced": 0},
        )  # fmt: skip
        row["generations"] += 1
        row["images"] += record.images
        row["failed"] += record.status != "done"
        if record.cost_usd is None:
            row["unpriced"] += 1
        else:
            row["cost_usd"] += record.cost_usd
    rows = [groups[key] for key in sorted(groups)]
    for row in rows:
        row["cost_usd"] = round(row["cost_usd"], 6)
    return rows

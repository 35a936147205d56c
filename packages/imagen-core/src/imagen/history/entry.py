"""One image of the history, as :meth:`~imagen.history.index.HistoryIndex.search` returns it.

Apart from the index so that recording an image, at every save, does not build this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from imagen.history.index import COLUMNS

__all__ = ["Entry"]


@dataclass(frozen=True)
class Entry:
    """One image in the history."""

    id: int
    created: datetime
    path: str
    sidecar: str | None
    mime_type: str
    prompt: str
    final_prompt: str
    negative_prompt: str
    style: str | None
    backend: str
    backend_type: str
    model: str | None
    seed: str | None
    width: int | None
    height: int | None
    cost_usd: float | None
    entry: str
    job_id: int | None
    owner: str | None
    run: str

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON-ready data (``created`` in ISO 8601, ``exists`` checked now)."""
        data = {name: getattr(self, name) for name in COLUMNS}
        data["created"] = self.created.isoformat().replace("+00:00", "Z")
        data["seed"] = int(self.seed) if self.seed is not None and self.seed.isdigit() else None
        data["exists"] = Path(self.path).exists()
        return data

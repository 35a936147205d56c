"""How ``imagen jobs`` prints jobs: a table for people, JSON for programs.

JSON times are ISO 8601 in UTC (``2025-06-01T14:03:07.120331Z``), as ``imagen serve``'s API
gives them; the table shows them in the local time zone, to the minute.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from typing import Any

__all__ = ["iso", "job_lines", "plain", "table", "to_json"]

_HEADER = ("ID", "STATUS", "CREATED", "BACKEND", "OWNER", "PROMPT")
_LEAST_PROMPT = 20  # the prompt column never narrows below this


def iso(value: datetime) -> str:
    """``value`` in ISO 8601, in UTC with ``Z`` (what the API's JSON carries)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _local(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with values the database held but JSON could not be read from shown as such."""
    from imagen_worker.limits import Unreadable

    return {
        key: {"unreadable": value.reason} if isinstance(value, Unreadable) else value
        for key, value in row.items()
    }


def to_json(value: Any) -> str:
    """``value`` as indented JSON, times in ISO 8601."""

    def default(item: Any) -> Any:
        if isinstance(item, datetime):
            return iso(item)
        return str(item)

    return json.dumps(value, indent=2, default=default)


def table(rows: list[dict[str, Any]], width: int | None = None) -> list[str]:
    """Jobs as a table: a header, then one line each; the prompt takes the width left."""
    cells = [
        (
            str(row["id"]),
            row["status"],
            _local(row["created_at"]),
            row["backend"] or "(default)",
            row["owner"],
        )
        for row in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(_HEADER[:-1])]
    total = width or shutil.get_terminal_size((100, 24)).columns
    room = max(_LEAST_PROMPT, total - sum(widths) - 2 * len(widths))

    def line(values: tuple[str, ...], prompt: str) -> str:
        left = "  ".join(
            value.rjust(w) if i == 0 else value.ljust(w)
            for i, (value, w) in enumerate(zip(values, widths, strict=True))
        )
        return f"{left}  {prompt}".rstrip()

    lines = [line(_HEADER[:-1], _HEADER[-1])]
    for row, values in zip(rows, cells, strict=True):
        prompt = " ".join(str(row["prompt"]).split())  # one line, whatever it held
        if row.get("error"):
            prompt += f" ({' '.join(str(row['error']).split())})"
        lines.append(line(values, prompt if len(prompt) <= room else prompt[: room - 1] + "…"))
    return lines


def job_lines(row: dict[str, Any]) -> list[str]:
    """One job as ``key: value`` lines (times local, with their zone), then its images."""
    lines = []
    for key, value in row.items():
        if value in (None, "", [], {}) or key == "images":
            continue
        shown = value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if isinstance(
            value, datetime
        ) else value  # fmt: skip
        lines.append(f"{key + ':':<18} {shown}")
    lines += [f"{'image:':<18} {image['local_path']}" for image in row.get("images", [])]
    return lines

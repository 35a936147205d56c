"""The PostgreSQL usage sink: ``mai.imagen_usage``, the table the seed's cost tracking used."""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from imagen.errors import OutputError
from imagen.usage import UsageRecord, UsageSink

__all__ = ["PostgresUsageSink"]

_COLUMNS = (
    "at", "owner", "job_id", "backend", "backend_type", "model", "images", "width", "height",
    "steps", "duration_s", "cost_usd", "status",
)  # fmt: skip
_INSERT = (
    f"INSERT INTO mai.imagen_usage ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(f'%({c})s' for c in _COLUMNS)})"
)
_SELECT = f"""
SELECT {", ".join(_COLUMNS)} FROM mai.imagen_usage
 WHERE (%(since)s::timestamptz IS NULL OR at >= %(since)s)
   AND (%(until)s::timestamptz IS NULL OR at < %(until)s)
 ORDER BY at, id
"""


class PostgresUsageSink(UsageSink):
    """Records in ``mai.imagen_usage``, through one connection that job threads share."""

    description = "database table mai.imagen_usage"

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def _run(self, query: str, params: dict[str, object]) -> list[dict[str, object]]:
        with self._lock:
            for attempt in (1, 2):  # a connection the database dropped is reopened once
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(
                            self.url, autocommit=True, row_factory=dict_row, connect_timeout=10
                        )
                    cursor = self._conn.execute(query, params)
                    return cursor.fetchall() if cursor.description else []
                except psycopg.OperationalError as exc:
                    self._conn = None
                    if attempt == 2:
                        raise OutputError(f"cannot reach mai.imagen_usage: {exc}") from exc
                except psycopg.Error as exc:
                    raise OutputError(f"mai.imagen_usage: {exc}") from exc
        raise AssertionError("unreachable")

    def record(self, record: UsageRecord) -> None:
        self._run(_INSERT, {column: getattr(record, column) for column in _COLUMNS})

    def records(self, since: datetime | None, until: datetime | None) -> list[UsageRecord]:
        rows = self._run(_SELECT, {"since": since, "until": until})
        return [
            UsageRecord(
                **{
                    **row,
                    "cost_usd": float(row["cost_usd"])
                    if isinstance(row["cost_usd"], Decimal)
                    else row["cost_usd"],
                }
            )
            for row in rows
        ]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

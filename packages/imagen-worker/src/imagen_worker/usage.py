"""The PostgreSQL usage sink: ``mai.imagen_usage``, the table the seed's cost tracking used."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from imagen.errors import OutputError
from imagen.usage import UsageRecord, UsageSink
from imagen.usage.budget import RESERVATION_TTL, Cap, check_caps

__all__ = ["EmbeddedUsageSink", "PostgresUsageSink"]

_COLUMNS = (
    "at", "owner", "job_id", "backend", "backend_type", "model", "images", "width", "height",
    "steps", "duration_s", "cost_usd", "status",
)  # fmt: skip
_INSERT = (
    f"INSERT INTO mai.imagen_usage ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(f'%({c})s' for c in _COLUMNS)}) RETURNING id"
)
_SETTLE = (
    f"UPDATE mai.imagen_usage SET {', '.join(f'{c} = %({c})s' for c in _COLUMNS)} WHERE id = %(id)s"
)
_SPENT = """
SELECT coalesce(sum(cost_usd), 0) AS spent FROM mai.imagen_usage
 WHERE at >= %(start)s AND (status <> 'reserved' OR at >= %(fresh)s)
   AND (%(backend)s::text IS NULL OR backend = %(backend)s)
   AND (NOT %(per_owner)s OR owner IS NOT DISTINCT FROM %(owner)s)
"""
# One reserver at a time in the whole database: reservations are rare next to the
# generations they guard, and a single lock cannot deadlock.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('imagen.usage.reserve'))"
T = TypeVar("T")
_SELECT = f"""
SELECT {", ".join(_COLUMNS)} FROM mai.imagen_usage
 WHERE (%(since)s::timestamptz IS NULL OR at >= %(since)s)
   AND (%(until)s::timestamptz IS NULL OR at < %(until)s)
   AND status <> 'reserved'
 ORDER BY at, id
"""


class PostgresUsageSink(UsageSink):
    """Records in ``mai.imagen_usage``, through one connection that job threads share."""

    description = "database table mai.imagen_usage"

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def _with_connection(self, work: Callable[[psycopg.Connection], T]) -> T:
        with self._lock:
            for attempt in (1, 2):  # a connection the database dropped is reopened once
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(
                            self.url, autocommit=True, row_factory=dict_row, connect_timeout=10
                        )
                    return work(self._conn)
                except psycopg.OperationalError as exc:
                    self._conn = None
                    if attempt == 2:
                        raise OutputError(f"cannot reach mai.imagen_usage: {exc}") from exc
                except psycopg.Error as exc:
                    raise OutputError(f"mai.imagen_usage: {exc}") from exc
        raise AssertionError("unreachable")

    def record(self, record: UsageRecord) -> None:
        values = _values(record)
        self._with_connection(lambda conn: conn.execute(_INSERT, values))

    def reserve(self, caps: Sequence[Cap], hold: UsageRecord, estimate: float) -> int:
        def work(conn: psycopg.Connection) -> int:
            with conn.transaction():
                conn.execute(_LOCK)
                now = conn.execute("SELECT now() AS now").fetchone()["now"]

                def spent(cap: Cap) -> float:
                    params = {
                        "start": cap.start(now),
                        "fresh": now - RESERVATION_TTL,
                        "backend": cap.backend,
                        "per_owner": cap.per_owner,
                        "owner": hold.owner,
                    }
                    return float(conn.execute(_SPENT, params).fetchone()["spent"])

                check_caps(caps, hold.owner, estimate, spent)
                values = {**_values(hold), "at": now, "status": "reserved", "cost_usd": estimate}
                return int(conn.execute(_INSERT, values).fetchone()["id"])

        return self._with_connection(work)

    def settle(self, handle: int, record: UsageRecord) -> None:
        values = {**_values(record), "id": handle}
        self._with_connection(lambda conn: conn.execute(_SETTLE, values))

    def records(self, since: datetime | None, until: datetime | None) -> list[UsageRecord]:
        params = {"since": since, "until": until}
        rows = self._with_connection(lambda conn: conn.execute(_SELECT, params).fetchall())
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


def _values(record: UsageRecord) -> dict[str, Any]:
    values = {column: getattr(record, column) for column in _COLUMNS}
    values["at"] = record.at.astimezone(UTC)
    return values


class EmbeddedUsageSink(PostgresUsageSink):
    """The embedded PostgreSQL's ``mai.imagen_usage``, read by ``imagen usage``.

    Where the worker and ``imagen serve`` record when no database is configured. The server
    is started only when records are read (and stops when this process exits); a database
    never migrated holds no records.
    """

    description = "embedded PostgreSQL's table mai.imagen_usage"

    def __init__(self) -> None:
        super().__init__("")

    def records(self, since: datetime | None, until: datetime | None) -> list[UsageRecord]:
        if not self.url:
            from imagen_worker.database import embedded_url

            self.url = embedded_url()
        exists = self._with_connection(
            lambda conn: conn.execute("SELECT to_regclass('mai.imagen_usage') AS t").fetchone()
        )
        if exists["t"] is None:
            return []
        return super().records(since, until)

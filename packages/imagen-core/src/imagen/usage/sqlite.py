"""The local usage sink: a SQLite file in the user data directory."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from imagen.errors import OutputError
from imagen.usage.budget import RESERVATION_TTL, Cap, check_caps
from imagen.usage.record import UsageRecord
from imagen.usage.sink import UsageSink

__all__ = ["SqliteUsageSink"]

_COLUMNS = (
    "at", "owner", "job_id", "backend", "backend_type", "model", "images", "width", "height",
    "steps", "duration_s", "cost_usd", "status",
)  # fmt: skip
_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,           -- ISO 8601, UTC: sorts as time does
    owner TEXT, job_id INTEGER, backend TEXT NOT NULL, backend_type TEXT NOT NULL,
    model TEXT, images INTEGER NOT NULL, width INTEGER, height INTEGER, steps INTEGER,
    duration_s REAL, cost_usd REAL, status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_at ON usage (at);
"""


class SqliteUsageSink(UsageSink):
    """Records in a SQLite file; safe for several imagen processes at once (WAL, waits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"SQLite file {path}"

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise OutputError(f"cannot open the usage file {self.path}: {exc}") from exc
        return conn

    def record(self, record: UsageRecord) -> None:
        values = record.to_dict()
        conn = self._connect()
        try:
            conn.execute(
                f"INSERT INTO usage ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                [values[column] for column in _COLUMNS],
            )
        except sqlite3.Error as exc:
            raise OutputError(f"cannot write to the usage file {self.path}: {exc}") from exc
        finally:
            conn.close()

    def reserve(self, caps: Sequence[Cap], hold: UsageRecord, estimate: float) -> int:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")  # the file's write lock: one reserver at a time
            now = datetime.now(UTC)

            def spent(cap: Cap) -> float:
                query = (
                    "SELECT coalesce(sum(cost_usd), 0) FROM usage "
                    "WHERE at >= ? AND (status != 'reserved' OR at >= ?)"
                )
                params: list[object] = [_iso(cap.start(now)), _iso(now - RESERVATION_TTL)]
                if cap.backend is not None:
                    query += " AND backend = ?"
                    params.append(cap.backend)
                if cap.per_owner:
                    query += " AND owner IS ?"
                    params.append(hold.owner)
                return float(conn.execute(query, params).fetchone()[0])

            check_caps(caps, hold.owner, estimate, spent)
            values = {**hold.to_dict(), "at": _iso(now), "status": "reserved", "cost_usd": estimate}
            cursor = conn.execute(
                f"INSERT INTO usage ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                [values[column] for column in _COLUMNS],
            )
            conn.execute("COMMIT")
            return int(cursor.lastrowid or 0)
        except sqlite3.Error as exc:
            raise OutputError(f"cannot write to the usage file {self.path}: {exc}") from exc
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()

    def settle(self, handle: int, record: UsageRecord) -> None:
        values = record.to_dict()
        conn = self._connect()
        try:
            conn.execute(
                f"UPDATE usage SET {', '.join(f'{c} = ?' for c in _COLUMNS)} WHERE id = ?",
                [*(values[column] for column in _COLUMNS), handle],
            )
        except sqlite3.Error as exc:
            raise OutputError(f"cannot write to the usage file {self.path}: {exc}") from exc
        finally:
            conn.close()

    def records(self, since: datetime | None, until: datetime | None) -> list[UsageRecord]:
        if not self.path.exists():
            return []
        conn = self._connect()
        try:
            rows = conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM usage "
                "WHERE at >= coalesce(?, at) AND at < coalesce(?, '9999') AND status != 'reserved' "
                "ORDER BY at, id",
                (_iso(since), _iso(until)),
            ).fetchall()
        except sqlite3.Error as exc:
            raise OutputError(f"cannot read the usage file {self.path}: {exc}") from exc
        finally:
            conn.close()
        return [
            UsageRecord(
                **{**dict(zip(_COLUMNS, row, strict=True)), "at": datetime.fromisoformat(row[0])}
            )
            for row in rows
        ]


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None

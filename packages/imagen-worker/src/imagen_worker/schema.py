"""Versioned SQL migrations, applied in order under an advisory lock.

Each ``migrations/NNNN_name.sql`` file runs in its own transaction, which first takes a
transaction-level advisory lock and then re-reads the applied versions: two workers
starting at once apply each migration exactly once, the second waiting for the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import psycopg
from psycopg import sql

__all__ = ["LOCK_KEY", "Migration", "applied", "available", "migrate"]

LOCK_KEY = 0x696D6167656E  # "imagen": one lock for every migrator of this database
_VERSIONS = """
CREATE SCHEMA IF NOT EXISTS imagen;
CREATE TABLE IF NOT EXISTS imagen.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str


def available() -> list[Migration]:
    """The migrations shipped in the package, in version order."""
    found = []
    for entry in resources.files("imagen_worker.migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(
                Migration(int(number), rest.removesuffix(".sql"), entry.read_text("utf-8"))
            )
    return sorted(found, key=lambda migration: migration.version)


def applied(conn: psycopg.Connection) -> dict[int, datetime]:
    """The versions recorded in the database (empty before the first migration)."""
    exists = conn.execute("SELECT to_regclass('imagen.schema_migrations')").fetchone()
    if exists is None or exists[0] is None:
        return {}
    rows = conn.execute("SELECT version, applied_at FROM imagen.schema_migrations").fetchall()
    return {version: at for version, at in rows}


def _render(text: str, web_role: str, conn: psycopg.Connection) -> str:
    return text.replace("__WEB_ROLE_LITERAL__", sql.Literal(web_role).as_string(conn)).replace(
        "__WEB_ROLE__", sql.Identifier(web_role).as_string(conn)
    )


def migrate(conn: psycopg.Connection, web_role: str = "authenticated") -> list[Migration]:
    """Apply every migration not applied yet; return the ones this call applied.

    ``conn`` must be in autocommit mode: each migration gets a transaction of its own.
    """
    done = []
    for migration in available():
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            conn.execute(_VERSIONS)
            if migration.version in applied(conn):
                continue
            conn.execute(_render(migration.text, web_role, conn))
            conn.execute(
                "INSERT INTO imagen.schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            done.append(migration)
    if done:
        # A PostgREST in front of this database (Supabase's, say) reloads its schema cache;
        # without a listener the notification goes nowhere.
        conn.execute("NOTIFY pgrst, 'reload schema'")
    return done

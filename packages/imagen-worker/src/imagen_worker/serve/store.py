"""The server's connections: a pool, and transactions that act as one caller under RLS."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from imagen_worker.database import KEEPALIVE

__all__ = ["Store"]


class Store:
    """The queue's database as the server sees it.

    Every query a caller's request makes runs in :meth:`as_owner`: a transaction that has
    switched to the web role and carries the caller's identity in ``request.jwt.claims``,
    exactly as a Supabase client's would, so the schema's row-level security decides what
    the caller may see and do. Both settings are transaction-local, so a pooled connection
    never carries one caller's identity into the next caller's request.

    The pool opens on first use, from whichever thread or event loop that is.
    """

    def __init__(self, url: str, web_role: str, max_size: int = 16) -> None:
        self.url = url
        self.web_role = web_role
        self._max_size = max_size
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._set_role = sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(web_role))

    @property
    def pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self._max_size,
                    kwargs={"autocommit": True, "row_factory": dict_row, **KEEPALIVE},
                    check=ConnectionPool.check_connection,
                    name="imagen-serve",
                    open=True,
                )
            return self._pool

    @contextmanager
    def as_owner(self, owner: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A transaction acting as ``owner``, under the schema's row-level security."""
        claims = json.dumps({"sub": owner, "role": self.web_role})
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(self._set_role)
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
            yield conn

    @contextmanager
    def as_server(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection with the server's own rights, for what the web role may not read."""
        with self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

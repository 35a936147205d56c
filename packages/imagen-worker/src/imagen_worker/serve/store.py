"""The server's connections: a pool, and transactions that act as one caller under RLS."""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from imagen_worker.database import KEEPALIVE

__all__ = ["Store"]

Connection = psycopg.AsyncConnection[dict[str, Any]]


class Store:
    """The queue's database as the server sees it.

    Every query a caller's request makes runs in :meth:`as_owner`: a transaction that has
    switched to the web role and carries the caller's identity in ``request.jwt.claims``,
    exactly as a Supabase client's would, so the schema's row-level security decides what
    the caller may see and do. Both settings are transaction-local, so a pooled connection
    never carries one caller's identity into the next caller's request.

    A request costs two round trips to the database: BEGIN, the identity and the request's
    own statements up to its first result go in one pipeline, then COMMIT. A pooled
    connection is checked (one more round trip) only when it has sat idle for a while, so a
    database restart costs no request its answer, and a busy server pays nothing for it.

    Asynchronous, on the server's event loop: :meth:`open` it from there (the app's
    lifespan does).
    """

    _CHECK_AFTER_IDLE_S = 5.0

    def __init__(self, url: str, web_role: str, max_size: int = 16) -> None:
        self.url = url
        self.web_role = web_role
        self._pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            # Not autocommit: the pool commits each request's transaction when the request
            # is done with the connection, and rolls it back on an error.
            kwargs={"row_factory": dict_row, **KEEPALIVE},
            check=self._check,
            name="imagen-serve",
            open=False,
        )
        self._last_used: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()

    async def open(self) -> None:
        await self._pool.open()

    async def close(self) -> None:
        await self._pool.close()

    async def _check(self, conn: Connection) -> None:
        if time.monotonic() - self._last_used.get(conn, 0.0) > self._CHECK_AFTER_IDLE_S:
            await AsyncConnectionPool.check_connection(conn)

    @asynccontextmanager
    async def as_owner(self, owner: str) -> AsyncIterator[Connection]:
        """A transaction acting as ``owner``, under the schema's row-level security."""
        claims = json.dumps({"sub": owner, "role": self.web_role})
        async with self._transaction() as conn, conn.pipeline():
            # What PostgREST does: both settings last until the end of the transaction.
            await conn.execute(
                "SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                (self.web_role, claims),
            )
            yield conn

    @asynccontextmanager
    async def as_server(self) -> AsyncIterator[Connection]:
        """A transaction with the server's own rights, for what the web role may not read."""
        async with self._transaction() as conn:
            yield conn

    async def fetch_one(self, owner: str, query: Any, params: Any = None) -> dict[str, Any] | None:
        """The first row ``query`` gives as ``owner``."""
        async with self.as_owner(owner) as conn:
            return await (await conn.execute(query, params)).fetchone()

    async def fetch_all(self, owner: str, query: Any, params: Any = None) -> list[dict[str, Any]]:
        """Every row ``query`` gives as ``owner``."""
        async with self.as_owner(owner) as conn:
            return await (await conn.execute(query, params)).fetchall()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._pool.connection() as conn:
            yield conn
            self._last_used[conn] = time.monotonic()

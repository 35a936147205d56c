"""Migrations, the schema, NOTIFY, and row-level security with real roles."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from imagen_worker.schema import applied, available, migrate


def test_migrate_is_idempotent(empty_db_url):
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert [m.version for m in migrate(conn)] == [m.version for m in available()]
        assert migrate(conn) == []
        assert set(applied(conn)) == {m.version for m in available()}


def test_two_migrators_at_once_apply_each_migration_once(empty_db_url):
    script = (
        "import sys, psycopg; from imagen_worker.schema import migrate; "
        "c = psycopg.connect(sys.argv[1], autocommit=True); "
        "print(len(migrate(c)))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, empty_db_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), results
    # Between them they applied each migration once (which one applied which may vary).
    assert sum(int(out) for out, _ in results) == len(available())
    with psycopg.connect(empty_db_url) as conn:
        count = conn.execute("SELECT count(*) FROM imagen.schema_migrations").fetchone()[0]
    assert count == len(available())


def test_the_claim_index_covers_only_claimable_rows(conn):
    definition = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'jobs_claimable'"
    ).fetchone()[0]
    assert "WHERE (status = 'pending'::text)" in definition


def test_insert_and_cancel_request_notify(conn, db_url):
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN imagen_jobs")
        job = conn.execute(
            "INSERT INTO imagen.jobs (owner, prompt) VALUES ('alice', 'a cat') RETURNING id"
        ).fetchone()[0]
        conn.execute("UPDATE imagen.jobs SET cancel_requested = true WHERE id = %s", (job,))
        conn.execute("UPDATE imagen.jobs SET progress = '{}' WHERE id = %s", (job,))  # no notify
        events = [json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=3)]
    # Hints only: any role can LISTEN, so no payload names a job.
    assert events == [{"event": "inserted"}, {"event": "cancel"}]


def _as(conn: psycopg.Connection, claims: str | None) -> None:
    conn.execute("RESET ROLE")
    conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims or "",))
    conn.execute("SET ROLE authenticated")


def test_rls_web_role_sees_and_touches_only_its_own_rows(conn):
    conn.execute("INSERT INTO imagen.jobs (owner, prompt) VALUES ('bob', 'bob''s job')")
    _as(conn, json.dumps({"sub": "alice", "role": "authenticated"}))
    mine = conn.execute(
        "INSERT INTO imagen.jobs (prompt, count) VALUES ('alice''s job', 2) "
        "RETURNING id, owner, status"
    ).fetchone()
    assert mine[1:] == ("alice", "pending")  # the owner is the caller, never a column it chose
    assert [row[0] for row in conn.execute("SELECT prompt FROM imagen.jobs")] == ["alice's job"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("INSERT INTO imagen.jobs (owner, prompt) VALUES ('bob', 'forged')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE imagen.jobs SET status = 'done' WHERE id = %s", (mine[0],))
    updated = conn.execute(
        "UPDATE imagen.jobs SET cancel_requested = true WHERE true RETURNING id"
    ).fetchall()
    assert updated == [(mine[0],)]  # its own job only; bob's is out of reach
    conn.execute("RESET ROLE")
    flags = dict(conn.execute("SELECT owner, cancel_requested FROM imagen.jobs").fetchall())
    assert flags == {"alice": True, "bob": False}


def test_rls_no_identity_matches_nothing(conn):
    conn.execute("INSERT INTO imagen.jobs (owner, prompt) VALUES ('', 'ownerless?')")
    conn.execute("INSERT INTO imagen.jobs (owner, prompt) VALUES ('carol', 'x')")
    _as(conn, "")  # set, then empty: reads back as '' rather than NULL
    assert conn.execute("SELECT count(*) FROM imagen.jobs").fetchone()[0] == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        conn.execute("INSERT INTO imagen.jobs (prompt) VALUES ('anonymous')")


def test_rls_images_are_owner_scoped(conn):
    for owner in ("alice", "bob"):
        conn.execute(
            "INSERT INTO imagen.images (owner, prompt, backend, mime_type) "
            "VALUES (%s, 'p', 'mock', 'image/png')",
            (owner,),
        )
    _as(conn, json.dumps({"sub": "bob"}))
    assert conn.execute("SELECT owner FROM imagen.images").fetchall() == [("bob",)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO imagen.images (owner, prompt, backend, mime_type) "
            "VALUES ('bob', 'p', 'mock', 'image/png')"
        )


def test_rls_follows_supabase_auth_uid_when_it_exists(conn):
    conn.execute("CREATE SCHEMA auth")
    conn.execute(
        "CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS "
        "$$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$"
    )
    conn.execute("GRANT USAGE ON SCHEMA auth TO authenticated")
    user = "2b5e6d2c-9a4f-4c0e-8a11-3f0f2a7c9d01"
    conn.execute("INSERT INTO imagen.jobs (owner, prompt) VALUES (%s, 'theirs')", (user,))
    conn.execute("INSERT INTO imagen.jobs (owner, prompt) VALUES ('someone-else', 'x')")
    conn.execute("SELECT set_config('request.jwt.claim.sub', %s, false)", (user,))
    conn.execute("SET ROLE authenticated")
    assert conn.execute("SELECT prompt FROM imagen.jobs").fetchall() == [("theirs",)]
    owner = conn.execute(
        "INSERT INTO imagen.jobs (prompt) VALUES ('new') RETURNING owner"
    ).fetchone()[0]
    assert owner == user


def test_db_commands(home, empty_db_url):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    first = home.run("db", "migrate", "--database-url", empty_db_url, check=True)
    assert first.stdout.startswith("applied 0001 initial")
    again = home.run("db", "migrate", "--database-url", empty_db_url, check=True)
    assert again.stdout.strip() == "the schema is up to date"
    status = json.loads(
        home.run("db", "status", "--json", "--database-url", empty_db_url, check=True).stdout
    )
    assert status[0]["version"] == 1
    assert status[0]["applied_at"] is not None


def test_db_connection_errors_are_one_line_without_the_password(home):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    proc = home.run(
        "db", "status", "--database-url", "postgresql://imagen:hunter2secret@127.0.0.1:9/imagen"
    )
    assert proc.returncode == 3
    assert proc.stderr.startswith("imagen: cannot connect to the database at 127.0.0.1/imagen")
    assert "hunter2secret" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_claim_never_sorts_the_backlog(conn):
    # With statistics from a quieter queue the planner may read the whole backlog through a
    # bitmap scan and sort it for every claim (bench/worker.py: 4,000 queued no-op jobs
    # drained at ~1,900 jobs/s instead of ~3,300). The claim function turns that plan off.
    (config,) = conn.execute(
        "SELECT proconfig FROM pg_proc WHERE oid = 'imagen.claim_jobs'::regproc"
    ).fetchone()
    assert config == ["enable_bitmapscan=off"]
    conn.execute("INSERT INTO imagen.jobs (owner, prompt, priority) VALUES ('a', 'low', 0)")
    conn.execute("INSERT INTO imagen.jobs (owner, prompt, priority) VALUES ('a', 'high', 5)")
    claimed = conn.execute("SELECT prompt, status FROM imagen.claim_jobs('w', 60, 1)").fetchall()
    assert claimed == [("high", "running")]


def test_only_workers_may_claim(conn):
    _as(conn, json.dumps({"sub": "alice", "role": "authenticated"}))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM imagen.claim_jobs('w', 60, 1)")

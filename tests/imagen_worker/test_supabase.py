"""imagen on a Supabase project, end to end.

Real PostgreSQL with Supabase's roles and ``auth.uid()``, migrated by imagen; the real
PostgREST 12 driven by the real supabase-py with HS256 JWTs (anon key, service key, users'
access tokens); the Storage stand-in answering from the same database under each caller's
role, so the policies imagen creates on ``storage.objects`` are the ones that decide.
Each numbered failure of issue 12 has a test here (or in tests/imagen_core/test_cloud.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from postgrest.exceptions import APIError
from psycopg.rows import dict_row
from storage3.exceptions import StorageApiError
from supabase_stack import BUCKET, GENERIC_RECIPE, SupabaseProject
from worker_helpers import running, serving, wait_for

from imagen.config import parse_config
from imagen.yamlfile import Located
from imagen_worker.audit import audit, warn_at_start
from imagen_worker.schema import migrate
from imagen_worker.serve.app import create_app
from imagen_worker.serve.settings import ServeSettings, hash_key

ALICE_KEY = "imk_alice-key-for-the-supabase-tests"
USER_A = "0b6c8f57-5d27-4d55-9d0e-2f4f6f1a1c01"
USER_B = "7a3e2b10-93a4-4f8e-8b6a-6c1d2e3f4a02"


def _web(project: SupabaseProject, sub: str | None, schema: str = "imagen"):
    return project.web(sub, schema)


def _rows(project: SupabaseProject, query: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(project.db_url, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def _submit(conn, prompt: str, owner: str, **fields) -> int:
    """A job as the worker's CLI queues it: as the tables' owner, for ``owner``."""
    columns = ["owner", "prompt", *fields]
    placeholders = ", ".join(["%s"] * len(columns))
    query = f"INSERT INTO imagen.jobs ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id"
    return conn.execute(query, [owner, prompt, *fields.values()]).fetchone()[0]


def _refused(call) -> APIError:
    with pytest.raises(APIError) as caught:
        call()
    return caught.value


def _cloud_config(tmp_path: Path, project: SupabaseProject, monkeypatch):
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", project.service_key)
    return parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out")},
                "cloud": {"url": project.url, "bucket": BUCKET, "retry_attempts": 1},
            }
        )
    )


# -- 1. a fresh project, migrated, is ready -------------------------------------------------


def test_migrate_leaves_a_fresh_project_ready_for_the_worker_and_cloud_sync(
    supabase_project_factory,
):
    project = supabase_project_factory(migrated=False)
    with psycopg.connect(project.db_url, autocommit=True) as conn:
        assert 4 in [m.version for m in migrate(conn)]
        assert audit(conn) == []
    project.wait_for_schema_cache("/rpc/record_synced_image")  # reloaded on its own
    service = project.client(project.service_key)
    row = {"bucket": BUCKET, "path": "local/a.png", "owner": "local", "prompt": "a fox",
           "backend": "mock", "mime_type": "image/png"}  # fmt: skip
    assert service.rpc("record_synced_image", row).execute().data is True
    assert service.rpc("record_synced_image", row).execute().data is False
    (image,) = service.table("images").select("*").execute().data
    assert (image["storage_bucket"], image["storage_location"]) == (BUCKET, "local/a.png")
    assert service.table("jobs").insert({"owner": "local", "prompt": "x"}).execute().data


def test_a_migrator_that_may_not_create_storage_policies_is_told_what_to_run(
    supabase_project_factory, home
):
    """Some projects keep policies on storage.objects to supabase_storage_admin."""
    project = supabase_project_factory(migrated=False)
    database = psycopg.conninfo.conninfo_to_dict(project.db_url)["dbname"]
    with psycopg.connect(project.db_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS supabase_storage_admin")
        conn.execute("DROP ROLE IF EXISTS imagen_migrator")
        conn.execute("CREATE ROLE supabase_storage_admin NOLOGIN")
        conn.execute("ALTER TABLE storage.objects OWNER TO supabase_storage_admin")
        conn.execute("CREATE ROLE imagen_migrator LOGIN")
        conn.execute(f'GRANT CREATE ON DATABASE "{database}" TO imagen_migrator')
        conn.execute("GRANT USAGE ON SCHEMA storage TO imagen_migrator")
    url = psycopg.conninfo.make_conninfo(project.db_url, user="imagen_migrator")
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    try:
        migrated = home.run("db", "migrate", "--database-url", url)
        assert migrated.returncode == 0, migrated.stderr
        for policy in ("imagen_owner_reads", "imagen_owner_inputs"):
            assert f"imagen: warning: could not create the Storage policy {policy}" in (
                migrated.stderr
            )
        assert "applied 0004 supabase" in migrated.stdout
        checked = home.run("db", "check", "--database-url", url)
        assert checked.returncode == 3
        assert checked.stdout.splitlines()[:2] == [
            (
                "missing: Storage policy imagen_owner_reads is missing: users cannot download their "
                "own images (run the statement as the owner of storage.objects, e.g. in the "
                "Supabase SQL editor)"
            ),
            (
                "    CREATE POLICY imagen_owner_reads ON storage.objects FOR SELECT TO authenticated "
                "USING (EXISTS (SELECT FROM imagen.images AS i WHERE i.storage_bucket = "
                "objects.bucket_id AND i.storage_location = objects.name AND i.owner = "
                "imagen.current_owner()));"
            ),
        ]
        with psycopg.connect(project.db_url, autocommit=True) as conn:  # as the owner would
            for line in checked.stdout.splitlines():  # each policy's statement
                if line.startswith("    CREATE POLICY"):
                    conn.execute(line.strip())
        assert home.run("db", "check", "--database-url", url).returncode == 0
    finally:
        with psycopg.connect(project.db_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE storage.objects OWNER TO postgres")
            for role in ("imagen_migrator", "supabase_storage_admin"):
                conn.execute(f"DROP OWNED BY {role} CASCADE")
                conn.execute(f"DROP ROLE {role}")


def test_the_worker_runs_as_the_service_role(supabase_project, tmp_path, monkeypatch):
    """What service_role is granted is enough for a whole job, cloud sync included."""
    with psycopg.connect(supabase_project.db_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS imagen_service_worker")
        conn.execute("CREATE ROLE imagen_service_worker LOGIN IN ROLE service_role")
    url = psycopg.conninfo.make_conninfo(
        supabase_project.db_url, user="imagen_service_worker", options="-c role=service_role"
    )
    config = _cloud_config(tmp_path, supabase_project, monkeypatch)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == "service_role"
            with running(config, url):
                job_id = _submit(conn, "a lighthouse", USER_A, width=32, height=32)
                row = wait_for(conn, job_id, ("done", "failed"))
        assert row["status"] == "done", row["error"]
        (usage,) = _rows(supabase_project, "SELECT * FROM mai.imagen_usage")
        assert (usage["owner"], usage["status"]) == (USER_A, "done")
    finally:
        with psycopg.connect(supabase_project.db_url, autocommit=True) as conn:
            conn.execute("DROP OWNED BY imagen_service_worker")
            conn.execute("DROP ROLE imagen_service_worker")


# -- the web user's inserts, reads and forbidden writes ---------------------------------------


def test_a_web_user_queues_and_reads_only_their_own_jobs(supabase_project):
    alice, bob = _web(supabase_project, USER_A), _web(supabase_project, USER_B)
    (job,) = alice.table("jobs").insert({"prompt": "a fox", "count": 2}).execute().data
    assert (job["owner"], job["status"], job["priority"]) == (USER_A, "pending", 0)
    bob.table("jobs").insert({"prompt": "a hare"}).execute()
    assert [j["prompt"] for j in alice.table("jobs").select("*").execute().data] == ["a fox"]
    assert [j["prompt"] for j in bob.table("jobs").select("*").execute().data] == ["a hare"]
    cancelled = alice.table("jobs").update({"cancel_requested": True}).eq("id", job["id"])
    assert cancelled.execute().data[0]["cancel_requested"] is True
    # Pending, so cancelled at once by the database itself: no worker is running here.
    (mine,) = alice.table("jobs").select("status, finished_at").eq("id", job["id"]).execute().data
    assert mine["status"] == "cancelled"
    assert mine["finished_at"] is not None
    assert (
        bob.table("jobs").update({"cancel_requested": True}).eq("id", job["id"]).execute().data
        == []
    )
    anon = _refused(lambda: _web(supabase_project, None).table("jobs").select("*").execute())
    assert (anon.code, anon.message) == ("42501", "permission denied for schema imagen")


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": "x", "status": "done"},
        {"prompt": "x", "priority": 100},
        {"prompt": "x", "owner": USER_B},
        {"prompt": "x", "attempts": 3},
        {"prompt": "x", "image_id": 1},
    ],
)
def test_a_web_user_cannot_write_what_the_worker_writes(supabase_project, fields):
    alice = _web(supabase_project, USER_A)
    error = _refused(lambda: alice.table("jobs").insert(fields).execute())
    assert error.code == "42501"
    assert _rows(supabase_project, "SELECT * FROM imagen.jobs") == []


def test_a_web_user_cannot_rewrite_a_job_or_touch_images_and_usage(supabase_project):
    alice = _web(supabase_project, USER_A)
    (job,) = alice.table("jobs").insert({"prompt": "a fox"}).execute().data
    for change in ({"status": "done"}, {"priority": 9}, {"error": "x"}, {"owner": USER_B}):
        error = _refused(
            lambda change=change: alice.table("jobs").update(change).eq("id", job["id"]).execute()
        )
        assert error.code == "42501"
    assert (
        _refused(lambda: alice.table("jobs").delete().eq("id", job["id"]).execute()).code == "42501"
    )
    image = {"owner": USER_A, "prompt": "x", "backend": "b", "mime_type": "image/png"}
    assert _refused(lambda: alice.table("images").insert(image).execute()).code == "42501"
    record = _refused(lambda: alice.rpc("record_synced_image", {
        "bucket": BUCKET, "path": "p", "owner": USER_A, "prompt": "x", "backend": "b",
        "mime_type": "image/png"}).execute())  # fmt: skip
    assert record.code == "42501"
    (row,) = _rows(supabase_project, "SELECT * FROM imagen.jobs")
    assert (row["status"], row["priority"], row["owner"]) == ("pending", 0, USER_A)


def test_usage_is_private_to_its_owner(supabase_project_factory):
    project = supabase_project_factory(schemas="public,imagen,mai")
    with psycopg.connect(project.db_url, autocommit=True) as conn:
        for owner, cost in ((USER_A, 0.5), (USER_B, 2.0)):
            conn.execute(
                "INSERT INTO mai.imagen_usage (owner, backend, backend_type, status, cost_usd)"
                " VALUES (%s, 'b', 'mock', 'done', %s)",
                (owner, cost),
            )
    alice = _web(project, USER_A, schema="mai")
    assert [r["owner"] for r in alice.table("imagen_usage").select("*").execute().data] == [USER_A]
    fake = {"owner": USER_B, "backend": "b", "backend_type": "mock", "status": "done",
            "cost_usd": 1000}  # fmt: skip
    assert _refused(lambda: alice.table("imagen_usage").insert(fake).execute()).code == "42501"
    anon = _web(project, None, schema="mai")
    assert _refused(lambda: anon.table("imagen_usage").select("*").execute()).code == "42501"


# -- 2. API-key owners and the CLI's "local" beside Supabase users ------------------------------


def test_api_key_owners_work_beside_supabase_users(supabase_project, tmp_path):
    """Issue 12, failure 2: every request of an API key answered 500 (uuid "alice")."""
    config = parse_config(Located({"output": {"directory": str(tmp_path / "out")}}))
    settings = ServeSettings(
        api_keys={hash_key(ALICE_KEY): "alice"}, jwt_secret=supabase_project.secret, wait_s=5
    )
    app = create_app(config, supabase_project.db_url, settings, thumbnails=tmp_path / "thumbs")
    with psycopg.connect(supabase_project.db_url, autocommit=True) as conn:
        _submit(conn, "a CLI job", "local")
    user_jwt = supabase_project.user_key(USER_A)
    with serving(app) as url, httpx.Client(base_url=url) as http:
        for token, owner in ((ALICE_KEY, "alice"), (user_jwt, USER_A)):
            auth = {"Authorization": f"Bearer {token}"}
            made = http.post("/v1/jobs", json={"prompt": f"for {owner}"}, headers=auth)
            assert made.status_code in (200, 201, 202), made.text
            listed = http.get("/v1/jobs", headers=auth)
            assert listed.status_code == 200, listed.text
            assert [j["prompt"] for j in listed.json()["data"]] == [f"for {owner}"]
    owners = _rows(supabase_project, "SELECT owner FROM imagen.jobs ORDER BY id")
    assert [r["owner"] for r in owners] == ["local", "alice", USER_A]
    # The same user, straight through PostgREST, sees the same single job.
    assert len(_web(supabase_project, USER_A).table("jobs").select("id").execute().data) == 1


# -- 3. concurrent records of one object ---------------------------------------------------------


def test_concurrent_records_of_one_object_leave_one_row(supabase_project):
    row = {"bucket": BUCKET, "path": "local/same.png", "owner": "local", "prompt": "x",
           "backend": "mock", "mime_type": "image/png"}  # fmt: skip
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def record() -> None:
        client = supabase_project.client(supabase_project.service_key)
        barrier.wait()
        results.append(client.rpc("record_synced_image", row).execute().data)

    threads = [threading.Thread(target=record) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]
    assert len(_rows(supabase_project, "SELECT id FROM imagen.images")) == 1


# -- 4 and 5. the worker's images: the owner's folder, row, and download ---------------------------


def test_a_web_user_downloads_their_own_images_and_no_one_elses(
    supabase_project, tmp_path, monkeypatch
):
    """Issue 12, failure 5: no Storage policy, and no bucket in the images row."""
    config = _cloud_config(tmp_path, supabase_project, monkeypatch)
    with (
        psycopg.connect(supabase_project.db_url, autocommit=True) as conn,
        running(config, supabase_project.db_url),
    ):
        job_id = _submit(conn, "a lighthouse", USER_A, width=32, height=32)
        row = wait_for(conn, job_id, ("done", "failed"))
    assert row["status"] == "done", row["error"]
    alice = _web(supabase_project, USER_A)
    (image,) = alice.table("images").select("*").execute().data
    assert image["storage_bucket"] == BUCKET
    assert image["storage_location"].startswith(f"{USER_A}/")
    sidecar = json.loads(Path(image["local_path"]).with_suffix(".json").read_text())
    assert sidecar["job"] == {"id": job_id, "owner": USER_A}
    data = alice.storage.from_(image["storage_bucket"]).download(image["storage_location"])
    assert data == Path(image["local_path"]).read_bytes()
    signed = alice.storage.from_(BUCKET).create_signed_url(image["storage_location"], 60)
    assert httpx.get(signed["signedURL"]).content == data
    for stranger in (_web(supabase_project, USER_B), _web(supabase_project, None)):
        with pytest.raises(StorageApiError) as hidden:
            stranger.storage.from_(BUCKET).download(image["storage_location"])
        assert (str(hidden.value.status), hidden.value.message) == ("404", "Object not found")
    assert _web(supabase_project, USER_B).table("images").select("*").execute().data == []
    with pytest.raises(StorageApiError) as upload:
        alice.storage.from_(BUCKET).upload(
            f"{USER_A}/mine.png", b"\x89PNG", {"content-type": "image/png"}
        )
    assert upload.value.message == "new row violates row-level security policy"
    # The gallery's search and delete, through PostgREST: the owner's rows only.
    found = alice.rpc(
        "search_images", {"query": "lighth:*", "before": None, "job": None, "n": 10}
    ).execute()
    assert [i["id"] for i in found.data] == [image["id"]]
    bob = _web(supabase_project, USER_B)
    assert (
        bob.rpc("search_images", {"query": "lighth:*", "before": None, "job": None, "n": 10})
        .execute()
        .data
        == []
    )
    anon = _refused(lambda: _web(supabase_project, None).rpc(
        "search_images", {"query": "lighth:*", "before": None, "job": None, "n": 10}
    ).execute())  # fmt: skip
    assert anon.code == "42501"
    assert bob.table("images").delete().eq("id", image["id"]).execute().data == []
    assert (
        alice.table("images").delete().eq("id", image["id"]).execute().data[0]["id"] == image["id"]
    )
    (done,) = _rows(supabase_project, "SELECT status, image_id FROM imagen.jobs")
    assert done == {"status": "done", "image_id": None}  # the job stays, its image link cleared


def test_the_worker_reports_a_failed_sync_without_its_paths(
    supabase_project, tmp_path, monkeypatch
):
    """Issue 12, failure 4: the advice misfiled images, and the text showed worker paths."""
    config = _cloud_config(tmp_path, supabase_project, monkeypatch)
    supabase_project.storage.outage = True
    with (
        psycopg.connect(supabase_project.db_url, autocommit=True) as conn,
        running(config, supabase_project.db_url, retry_base_s=0.3),
    ):
        job_id = _submit(conn, "a storm", USER_A, width=32, height=32)
        wait_for(conn, job_id, ("running",))
        pending = wait_for(conn, job_id, ("pending",))  # back, to be retried
        supabase_project.storage.outage = False
        done = wait_for(conn, job_id, ("done",))
    error = pending["error"]
    assert error.startswith("cloud sync failed")
    assert "imagen jobs retry" in error
    assert "imagen cloud sync" not in error
    assert str(tmp_path) not in error
    assert "stays at" not in error
    assert supabase_project.service_key not in error
    (image,) = _rows(supabase_project, "SELECT * FROM imagen.images")
    assert (image["owner"], image["job_id"]) == (USER_A, done["id"])
    assert image["storage_location"].startswith(f"{USER_A}/")
    assert not any(path.startswith("local/") for _, path in supabase_project.storage.objects)


# -- 6. the generic recipe ------------------------------------------------------------------------


def test_the_generic_recipe_cannot_open_the_queue_and_db_check_takes_it_back(
    supabase_project_factory, home
):
    """Issue 12, failure 6: Supabase's custom-schema grants let users write what they may not."""
    project = supabase_project_factory(schemas="public,imagen,mai")
    with psycopg.connect(project.db_url, autocommit=True) as conn:
        conn.execute(GENERIC_RECIPE)
        _submit(conn, "bob's job", USER_B)
        conn.execute(
            "INSERT INTO mai.imagen_usage (owner, backend, backend_type, status, cost_usd)"
            " VALUES (%s, 'b', 'mock', 'done', 3)",
            (USER_B,),
        )
    alice, anon = _web(project, USER_A), _web(project, None)
    done = _refused(lambda: alice.table("jobs").insert({"prompt": "x", "status": "done"}).execute())
    # The status lifecycle (migration 0003) refuses it first; the column guard stands behind.
    assert (done.code, done.message) == ("23514", "a new job must be a fresh pending job")
    urgent = _refused(lambda: alice.table("jobs").insert({"prompt": "x", "priority": 99}).execute())
    assert (urgent.code, urgent.message) == (
        "42501",
        "imagen.jobs: authenticated may not write priority",
    )
    (job,) = alice.table("jobs").insert({"prompt": "mine"}).execute().data
    raised = _refused(
        lambda: alice.table("jobs").update({"priority": 9}).eq("id", job["id"]).execute()
    )
    assert raised.code == "42501"
    assert anon.table("jobs").select("*").execute().data == []
    anon_usage = _web(project, None, schema="mai").table("imagen_usage")
    assert anon_usage.select("*").execute().data == []
    fake = {
        "owner": USER_B,
        "backend": "b",
        "backend_type": "mock",
        "status": "done",
        "cost_usd": 1000,
    }
    assert _refused(lambda: anon_usage.insert(fake).execute()).code == "42501"
    claimed = _refused(
        lambda: alice.rpc("claim_jobs", {"worker": "w", "lease_s": 60, "n": 5}).execute()
    )
    assert claimed.code == "42501"

    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    found = home.run("db", "check", "--database-url", project.db_url)
    assert found.returncode == 3, found.stderr
    assert "excess: anon may SELECT, INSERT, UPDATE, DELETE, TRUNCATE" in found.stdout
    assert (
        "REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON imagen.jobs FROM authenticated;"
        in found.stdout
    )
    assert "GRANT INSERT (prompt, negative_prompt" in found.stdout
    as_json = json.loads(home.run("db", "check", "--json", "--database-url", project.db_url).stdout)
    statements = [s for finding in as_json for s in finding["fix"]]
    with psycopg.connect(project.db_url, autocommit=True) as conn:
        for statement in statements:  # the printed statements are the fix, as they stand
            conn.execute(statement)
    clean = home.run("db", "check", "--database-url", project.db_url)
    assert clean.returncode == 0, clean.stdout
    assert "the database allows authenticated what the design does, and no more" in clean.stdout
    again = _refused(
        lambda: alice.table("jobs").insert({"prompt": "x", "status": "done"}).execute()
    )
    assert (again.code, again.message) == ("42501", "permission denied for table jobs")
    assert len(alice.table("jobs").select("*").execute().data) == 1


def test_db_check_fix_and_the_warning_at_start(supabase_project, home):
    with psycopg.connect(supabase_project.db_url, autocommit=True) as conn:
        conn.execute(GENERIC_RECIPE)
        conn.execute("DROP POLICY imagen_owner_reads ON storage.objects")
        conn.execute(
            'CREATE POLICY "App Images" ON storage.objects FOR SELECT TO authenticated'
            f" USING (bucket_id = '{BUCKET}')"
        )
        conn.execute(
            "INSERT INTO imagen.images (owner, prompt, backend, mime_type, storage_bucket,"
            " storage_location) VALUES ('local', 'x', 'b', 'image/png', %s, 'local/x.png')",
            (BUCKET,),
        )
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    home.env["IMAGEN_DATABASE_URL"] = supabase_project.db_url
    worker = subprocess.Popen(
        [sys.executable, "-m", "imagen", "worker"],
        cwd=home.cwd, env=home.env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = []
    for line in worker.stderr:
        lines.append(line)
        if "imagen db check prints the statements" in line:
            break
    worker.send_signal(signal.SIGTERM)
    worker.communicate()
    text = "".join(lines)
    assert "database: anon may SELECT, INSERT, UPDATE, DELETE, TRUNCATE" in text
    assert "Storage policy 'App Images' lets authenticated SELECT every object" in text

    found = home.run("db", "check")
    assert "missing: Storage policy imagen_owner_reads is missing" in found.stdout
    assert 'DROP POLICY "App Images" ON storage.objects;' in found.stdout
    fixed = home.run("db", "check", "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "ran: REVOKE" in fixed.stderr
    with psycopg.connect(supabase_project.db_url, autocommit=True) as conn:
        assert audit(conn) == []


def test_warn_at_start_says_nothing_on_a_sound_database(supabase_project, caplog):
    config = parse_config(Located({}))
    warn_at_start(supabase_project.db_url, config)
    assert caplog.records == []


web_fields = st.fixed_dictionaries(
    {"prompt": st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s)},
    optional={
        column: strategy
        for column, strategy in {
            "status": st.sampled_from(["pending", "running", "done", "failed"]),
            "priority": st.integers(-5, 5),
            "attempts": st.integers(0, 3),
            "max_attempts": st.integers(1, 5),
            "owner": st.sampled_from([USER_A, USER_B, "local", "alice"]),
            "lease_owner": st.none() | st.text(max_size=5),
            "error": st.none() | st.text(max_size=5),
            "cancel_requested": st.booleans(),
            "count": st.integers(1, 4),
            "progress": st.none() | st.just({"saved": ["/etc/passwd"]}),
        }.items()
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fields=web_fields)
def test_hostile_inserts_under_the_generic_recipe_never_bypass_the_queue(supabase_recipe, fields):
    _, alice = supabase_recipe
    try:
        (row,) = alice.table("jobs").insert(fields).execute().data
    except APIError as error:
        refused = error
    else:
        refused = None
    if refused is not None:
        # Refused by a privilege, a CHECK, or PostgreSQL's own text type (no NUL): never
        # a server error.
        assert refused.code in ("42501", "23514", "22P05"), refused
        return
    assert (row["owner"], row["status"], row["priority"], row["attempts"]) == (
        USER_A,
        "pending",
        0,
        0,
    )
    assert (row["lease_owner"], row["error"], row["progress"]) == (None, None, None)
    assert row["max_attempts"] == 3
    assert row["cancel_requested"] is False


@pytest.fixture(scope="module")
def supabase_recipe(supabase_cluster):
    """One project for the hypothesis examples: migrated, then the generic recipe applied."""
    from supabase_stack import SECRET, SupabaseStandIn, postgrest

    with (
        supabase_cluster.database() as db_url,
        postgrest(db_url) as rest_url,
        SupabaseStandIn(SECRET, db_url, rest_url) as storage,
    ):
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(GENERIC_RECIPE)
        project = SupabaseProject(db_url, storage.url, rest_url, storage)
        yield project, _web(project, USER_A)
        project.close()


# -- plain PostgreSQL, as before -----------------------------------------------------------------


def test_plain_postgres_keeps_working_without_supabases_roles(conn):
    roles = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    assert "service_role" not in roles  # the worker's tests run on a cluster without them
    assert audit(conn) == []
    assert conn.execute("SELECT to_regclass('storage.objects')").fetchone()[0] is None
    with conn.transaction():
        conn.execute(
            "SELECT set_config('role', 'authenticated', true),"
            " set_config('request.jwt.claims', '{\"sub\": \"alice\"}', true)"
        )
        row = conn.execute(
            "INSERT INTO imagen.jobs (prompt) VALUES ('x') RETURNING owner"
        ).fetchone()
        assert row == ("alice",)


# -- input images in the owner's own folder of the bucket (issue 16) ------------------------


def test_a_web_user_edits_an_image_uploaded_to_their_own_folder(
    supabase_project, tmp_path, monkeypatch
):
    import hashlib
    import io

    from PIL import Image

    config = _cloud_config(tmp_path, supabase_project, monkeypatch)
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (250, 200, 0)).save(buffer, "PNG")
    data = buffer.getvalue()
    alice, bob = _web(supabase_project, USER_A), _web(supabase_project, USER_B)
    folder = f"imagen-inputs/{USER_A}"
    alice.storage.from_(BUCKET).upload(f"{folder}/sun.png", data, {"content-type": "image/png"})
    for outsider, path in ((bob, f"{folder}/theirs.png"), (alice, "imagen-inputs/x.png"),
                           (alice, f"imagen-inputs/{USER_B}/x.png")):  # fmt: skip
        with pytest.raises(StorageApiError) as refused:
            outsider.storage.from_(BUCKET).upload(path, data, {"content-type": "image/png"})
        assert refused.value.message == "new row violates row-level security policy"
    with pytest.raises(StorageApiError):
        bob.storage.from_(BUCKET).download(f"{folder}/sun.png")
    mine = {"role": "image", "object": f"{folder}/sun.png",
            "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip
    theirs = {"role": "image", "object": f"{folder}/sun.png"}
    refused = _refused(
        lambda: bob.table("jobs").insert({"prompt": "x", "inputs": [theirs]}).execute()
    )
    assert refused.code == "23514"  # jobs_inputs_limits: not bob's folder
    job = (
        alice.table("jobs")
        .insert({"prompt": "keep it", "inputs": [mine], "strength": 0, "backend": None})
        .execute()
        .data[0]
    )
    with (
        psycopg.connect(supabase_project.db_url, autocommit=True) as conn,
        running(config, supabase_project.db_url),
    ):
        row = wait_for(conn, job["id"], ("done", "failed"))
    assert row["status"] == "done", row["error"]
    (image,) = alice.table("images").select("*").execute().data
    assert image["metadata"]["inputs"][0]["sha256"] == mine["sha256"]
    with Image.open(image["local_path"]) as made:
        assert (made.width, made.height) == (48, 32)
        assert made.convert("RGB").getpixel((10, 10)) == (250, 200, 0)  # strength 0: kept

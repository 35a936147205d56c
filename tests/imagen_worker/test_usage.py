"""Usage in PostgreSQL: the worker's jobs and, with a database configured, the CLI's runs."""

from __future__ import annotations

import json

from psycopg.rows import dict_row
from worker_helpers import running, submit, wait_for, worker_config

from imagen.config import parse_config
from imagen.yamlfile import Located


def _usage_rows(conn) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute("SELECT * FROM mai.imagen_usage ORDER BY id").fetchall()


def test_each_job_leaves_one_usage_row_done_or_failed(conn, db_url, tmp_path):
    with running(worker_config(tmp_path), db_url):
        done = submit(conn, "a lighthouse", width=32, height=32, count=2, steps=3)
        failed = submit(conn, "a storm", width=32, height=32, options={"fail": "permanent"})
        wait_for(conn, done, ("done",))
        wait_for(conn, failed, ("failed",))
    rows = {row["job_id"]: row for row in _usage_rows(conn)}
    assert set(rows) == {done, failed}
    assert rows[done]["owner"] == "alice"
    assert (rows[done]["backend"], rows[done]["backend_type"], rows[done]["model"]) == (
        "mock", "mock", "imagen-mock"
    )  # fmt: skip
    assert (rows[done]["images"], rows[done]["width"], rows[done]["steps"]) == (2, 32, 3)
    assert (rows[done]["status"], float(rows[done]["cost_usd"])) == ("done", 0.0)
    assert rows[done]["duration_s"] >= 0
    assert (rows[failed]["status"], rows[failed]["images"], rows[failed]["cost_usd"]) == (
        "failed", 0, None
    )  # fmt: skip


def test_no_usage_rows_when_recording_is_off(conn, db_url, tmp_path):
    config = parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out")},
                "usage": {"record": False},
            }
        )
    )
    with running(config, db_url):
        wait_for(conn, submit(conn, width=16, height=16), ("done",))
    assert _usage_rows(conn) == []


def test_the_cli_records_to_and_reports_from_a_configured_database(conn, db_url, home):
    home.env.update(IMAGEN_LOAD_PLUGINS="imagen-worker", IMAGEN_DATABASE_URL=db_url)
    home.run("generate", "a cat", "--size", "32x32", check=True)
    (row,) = _usage_rows(conn)
    assert (row["backend"], row["status"], row["owner"], row["job_id"]) == (
        "mock", "done", None, None
    )  # fmt: skip
    report = json.loads(home.run("usage", "--json", "--by", "backend", check=True).stdout)
    assert report["source"] == "database table mai.imagen_usage"
    assert report["rows"] == [
        {"backend": "mock", "generations": 1, "images": 1, "failed": 0, "cost_usd": 0.0,
         "unpriced": 0}
    ]  # fmt: skip
    assert not (home.home / ".local/share/imagen/usage.sqlite3").exists()


def _priced(tmp_path, budget: dict):
    return parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out"), "write_metadata_json": False},
                "backends": {"paid": {"type": "mock", "price_per_image_usd": 1.0}},
                "usage": {"budget": budget},
            }
        )
    )


def test_sixteen_concurrent_jobs_never_overshoot_a_cap_only_five_fit_under(conn, db_url, tmp_path):
    jobs = [
        submit(conn, f"job {n}", width=16, height=16, options={"delay": 0.5}) for n in range(16)
    ]
    with running(_priced(tmp_path, {"daily_usd": 5}), db_url, concurrency=16):
        rows = [wait_for(conn, job_id, ("done", "failed")) for job_id in jobs]
    done = [row for row in rows if row["status"] == "done"]
    refused = [row for row in rows if row["status"] == "failed"]
    assert len(done) == 5
    assert len(refused) == 11
    assert all(
        row["error"].startswith(
            "refused before calling the backend: the daily cap of $5.00 would be crossed"
        )
        for row in refused
    )
    usage = _usage_rows(conn)
    assert sorted(row["status"] for row in usage) == ["done"] * 5 + ["refused"] * 11
    assert sum(float(row["cost_usd"] or 0) for row in usage) == 5.0
    assert len(list((tmp_path / "out").rglob("*.png"))) == 5


def test_a_per_owner_cap_holds_each_web_user_to_their_own(conn, db_url, tmp_path):
    jobs = {
        (owner, n): submit(conn, f"{owner} {n}", width=16, height=16)
        for owner in ("alice", "bob")
        for n in range(3)
    }
    conn.execute(
        "UPDATE imagen.jobs SET owner = 'bob' WHERE prompt LIKE 'bob%%'"
    )  # submit() always says alice
    with running(_priced(tmp_path, {"per_owner": {"daily_usd": 2}}), db_url, concurrency=4):
        rows = {key: wait_for(conn, job_id, ("done", "failed")) for key, job_id in jobs.items()}
    by_owner = {
        owner: sorted(row["status"] for (who, _), row in rows.items() if who == owner)
        for owner in ("alice", "bob")
    }
    assert by_owner == {"alice": ["done", "done", "failed"], "bob": ["done", "done", "failed"]}
    failed = next(
        row for (who, _), row in rows.items() if who == "bob" and row["status"] == "failed"
    )
    assert "the daily cap of $2.00 per owner (bob) would be crossed" in failed["error"]


def test_usage_counts_the_embedded_databases_generations_too(home):
    """Zero setup: generate records to SQLite, the worker to the embedded PostgreSQL."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    home.write_config(f"output:\n  directory: {home.root / 'out'}\n")
    data = Path(home.env["XDG_DATA_HOME"]) / "imagen"

    home.run("generate", "a cat", "--size", "32x32", check=True)
    alone = json.loads(home.run("usage", "--json", check=True).stdout)
    assert alone["total"]["generations"] == 1
    assert not (data / "pg").exists()  # no queue used yet: usage starts no database

    worker = subprocess.Popen(
        [sys.executable, "-m", "imagen", "worker", "--poll", "0.5"],
        cwd=home.cwd,
        env=home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        for line in worker.stderr:  # the worker creates and migrates the embedded database
            if "applied" in line and "migration" in line:
                break
        submitted = home.run("jobs", "submit", "a dog", "--width", "32", "--height", "32")
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        status = None
        while status != "done" and time.monotonic() < deadline:
            time.sleep(0.3)
            shown = home.run("jobs", "show", job_id, "--json", check=True)
            status = json.loads(shown.stdout)["status"]
        assert status == "done"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)

    report = json.loads(home.run("usage", "--json", "--by", "backend", check=True).stdout)
    assert report["total"]["generations"] == 2  # one by generate, one by the worker
    assert report["source"] == (
        f"SQLite file {data / 'usage.sqlite3'} and the embedded PostgreSQL's table mai.imagen_usage"
    )
    text = home.run("usage", check=True).stdout
    assert "embedded PostgreSQL" in text.splitlines()[0]

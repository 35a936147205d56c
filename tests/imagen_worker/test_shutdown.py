"""Stopping ``imagen worker``: it says what it waits for, hurries when asked twice, and hands
its jobs back even when the database was away when it was told to stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo
from worker_helpers import job, submit, wait_for


def _worker(home, url: str | None, *args: str) -> subprocess.Popen:
    home.write_config(f"output:\n  directory: {home.root / 'out'}\n")
    env = {**home.env, "IMAGEN_LOAD_PLUGINS": "imagen-worker", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "imagen", "worker", *args]
    if url is not None:
        command += ["--database-url", url]
    return subprocess.Popen(
        command, cwd=home.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _until_logged(process: subprocess.Popen, text: str) -> list[str]:
    lines = []
    for line in process.stderr:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"never logged {text!r}:\n{''.join(lines)}")


def test_a_first_stop_says_what_it_waits_for_and_a_second_releases_at_once(conn, db_url, home):
    job_id = submit(conn, options={"delay": 600})
    process = _worker(home, db_url, "--grace", "3600")  # only a second Ctrl-C ends it soon
    _until_logged(process, f"event=claimed job={job_id}")
    process.send_signal(signal.SIGINT)
    stopping = _until_logged(process, "event=stopping")[-1]
    assert stopping.startswith(f"imagen: event=stopping jobs=[{job_id}] grace_s=3600.0 ")
    assert "stop again (Ctrl-C) to release them at once" in stopping
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 0, rest
    assert f"event=released jobs=[{job_id}]" in rest
    row = job(conn, job_id)
    assert (row["status"], row["attempts"], row["lease_owner"]) == ("pending", 0, None)


@pytest.fixture
def own_role(conn) -> Iterator[str]:
    role = f"stopping_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
    yield role
    conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
    conn.execute(f"DROP ROLE {role}")


def test_a_stop_while_the_database_is_away_hands_the_jobs_back_once_it_returns(
    conn, db_url, home, own_role
):
    job_id = submit(conn, options={"delay": 600})
    process = _worker(home, make_conninfo(db_url, user=own_role), "--grace", "0.5")
    _until_logged(process, f"event=claimed job={job_id}")
    conn.execute(f"ALTER ROLE {own_role} NOLOGIN")  # the database is away, for this worker
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (own_role,)
    )
    process.send_signal(signal.SIGTERM)
    _until_logged(process, "event=stopping")
    time.sleep(2)  # it has found the database away by now
    conn.execute(f"ALTER ROLE {own_role} LOGIN")  # back within the worker's release window
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 0, rest
    assert f"event=released jobs=[{job_id}]" in rest
    row = job(conn, job_id)
    assert (row["status"], row["attempts"], row["lease_owner"]) == ("pending", 0, None)


def test_a_stop_while_the_database_stays_away_says_how_long_the_jobs_stay_held(
    conn, db_url, home, own_role
):
    job_id = submit(conn, options={"delay": 600})
    process = _worker(home, make_conninfo(db_url, user=own_role), "--grace", "0.5")
    _until_logged(process, f"event=claimed job={job_id}")
    conn.execute(f"ALTER ROLE {own_role} NOLOGIN")
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (own_role,)
    )
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 0, rest
    failed = next(line for line in rest.splitlines() if "event=release_failed" in line)
    assert f"jobs=[{job_id}]" in failed
    assert "they stay held until their lease runs out (at most 60 s)" in failed
    assert "Traceback" not in rest


def _embedded(home) -> Path:
    home.env["XDG_DATA_HOME"] = str(home.root / "data")
    return home.root / "data" / "imagen" / "pg"


def _stop_left_server(data: Path) -> None:
    pid_file = data / "postmaster.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)


def test_after_a_killed_user_the_next_command_stops_the_embedded_server(home):
    """No database configured: a SIGKILLed worker leaves the server up; the next user that
    exits is its last one again, and stops it."""
    data = _embedded(home)
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    try:
        worker = _worker(home, None)
        _until_logged(worker, "event=listening")
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=30)
        assert (data / "postmaster.pid").exists()  # left running by the killed worker
        submitted = home.run("jobs", "submit", "after the crash", check=True)
        assert not (data / "postmaster.pid").exists()  # stopped by its last user
        listed = json.loads(home.run("jobs", "list", "--json", check=True).stdout)
        assert listed[0]["id"] == int(submitted.stdout)
        assert not (data / "postmaster.pid").exists()
    finally:
        _stop_left_server(data)


def test_a_closed_terminal_stops_the_worker_and_its_embedded_server(home):
    data = _embedded(home)
    try:
        worker = _worker(home, None)
        _until_logged(worker, "event=listening")
        worker.send_signal(signal.SIGHUP)
        _, rest = worker.communicate(timeout=60)
        assert worker.returncode == 0, rest
        assert not (data / "postmaster.pid").exists()
    finally:
        _stop_left_server(data)


def test_a_finished_job_is_never_released(conn, db_url, home):
    job_id = submit(conn, width=16, height=16)
    process = _worker(home, db_url)
    _until_logged(process, f"event=done job={job_id}")
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "event=released" not in rest
    assert wait_for(conn, job_id, ("done",))["attempts"] == 1

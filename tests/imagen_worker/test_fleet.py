"""Who runs the queue: workers' presence, cancelling with no worker, and a job's place in line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from worker_helpers import job, running, serving, submit, wait_for, worker_config

from imagen_worker.fleet import NO_WORKER, Fleet, fleet, queue_position
from imagen_worker.serve.app import create_app
from imagen_worker.serve.settings import ServeSettings, hash_key

ALICE_KEY = "imk_alice-fleet-key"
BOB_KEY = "imk_bob-fleet-key"


def _eventually(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# -- presence ----------------------------------------------------------------------------------


def test_each_worker_counts_while_it_runs_and_not_once_it_stopped(conn, db_url, tmp_path):
    assert fleet(conn) == Fleet(0, 0)
    config = worker_config(tmp_path)
    with running(config, db_url, concurrency=2) as first:
        assert fleet(conn) == Fleet(1, 2)
        with running(config, db_url, concurrency=3) as second:
            assert fleet(conn) == Fleet(2, 5)
            ids = {row[0] for row in conn.execute("SELECT id FROM imagen.workers")}
            assert ids == {first.settings.worker_id, second.settings.worker_id}
        assert fleet(conn) == Fleet(1, 2)  # a worker that stops removes its row
    assert fleet(conn) == Fleet(0, 0)


def _worker_process(db_url: str, home, *args: str) -> subprocess.Popen:
    env = {**home.env, "IMAGEN_LOAD_PLUGINS": "imagen-worker", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "imagen", "worker", "--database-url", db_url, *args],
        cwd=home.cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_heartbeat_keeps_a_worker_counted_and_a_killed_one_stops_counting(conn, db_url, home):
    home.write_config(f"output:\n  directory: {home.root / 'out'}\n")
    kept = _worker_process(db_url, home, "--lease", "3")  # renewed every second
    doomed = _worker_process(db_url, home, "--lease", "3", "-c", "2")
    try:
        _eventually(lambda: fleet(conn) == Fleet(2, 3), "both workers say they are there")
        first = dict(conn.execute("SELECT id, lease_expires_at FROM imagen.workers").fetchall())
        doomed.send_signal(signal.SIGKILL)  # no chance to remove its row
        doomed.communicate(timeout=10)
        # The killed one's lease runs out; the other's heartbeat renews its own meanwhile.
        assert _eventually(lambda: fleet(conn) == Fleet(1, 1), "the killed worker expires")
        now = dict(conn.execute("SELECT id, lease_expires_at FROM imagen.workers").fetchall())
        (renewed,) = [w for w, expires in now.items() if expires > first[w]]
        assert f":{kept.pid}:" in renewed  # host:pid:random
    finally:
        kept.send_signal(signal.SIGTERM)
        _, stderr = kept.communicate(timeout=60)
    assert kept.returncode == 0, stderr
    assert fleet(conn) == Fleet(0, 0)
    # The killed worker's row stays until a day has passed, then a starting worker removes it.
    conn.execute("UPDATE imagen.workers SET lease_expires_at = now() - interval '2 days'")
    with running(worker_config(home.root), db_url):
        assert conn.execute("SELECT count(*) FROM imagen.workers").fetchone()[0] == 1


# -- cancelling a pending job needs no worker ---------------------------------------------------


def _as(conn: psycopg.Connection, owner: str | None) -> None:
    conn.execute("RESET ROLE")
    claims = json.dumps({"sub": owner, "role": "authenticated"}) if owner else ""
    conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims,))
    if owner is not None:
        conn.execute("SET ROLE authenticated")


def test_the_web_role_cancels_its_pending_job_at_once_and_nothing_else(conn):
    pending = submit(conn, "pending")
    running_job = submit(conn, "running")
    conn.execute(
        "UPDATE imagen.jobs SET status = 'running', lease_owner = 'w', "
        "lease_expires_at = now() + interval '1 minute' WHERE id = %s",
        (running_job,),
    )
    bobs = conn.execute(
        "INSERT INTO imagen.jobs (owner, prompt) VALUES ('bob', 'bob''s') RETURNING id"
    ).fetchone()[0]
    _as(conn, "alice")
    flagged = conn.execute(
        "UPDATE imagen.jobs SET cancel_requested = true WHERE id = ANY(%s) RETURNING id",
        ([pending, running_job, bobs],),
    ).fetchall()
    assert sorted(row[0] for row in flagged) == [pending, running_job]  # bob's is out of reach
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the status stays the worker's
        conn.execute("UPDATE imagen.jobs SET status = 'cancelled' WHERE id = %s", (running_job,))
    _as(conn, None)
    assert (job(conn, pending)["status"], job(conn, pending)["finished_at"] is not None) == (
        "cancelled",
        True,
    )
    assert job(conn, running_job)["status"] == "running"  # its worker stops it
    assert (job(conn, bobs)["status"], job(conn, bobs)["cancel_requested"]) == ("pending", False)


_STATES = ("pending", "running", "done", "failed", "cancelled")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    jobs=st.lists(
        st.tuples(st.sampled_from(["alice", "bob"]), st.sampled_from(_STATES), st.booleans()),
        min_size=1,
        max_size=6,
    ),
    targets=st.lists(st.integers(0, 5), max_size=6),
    flag=st.booleans(),
)
def test_cancellation_by_a_web_user_changes_only_their_own_pending_jobs(conn, jobs, targets, flag):
    """Whatever a web user flags, only their own pending jobs end, and only as cancelled."""
    conn.execute("RESET ROLE")
    conn.execute("TRUNCATE imagen.jobs CASCADE")
    ids = []
    for owner, status, requested in jobs:
        job_id = conn.execute(
            "INSERT INTO imagen.jobs (owner, prompt) VALUES (%s, 'x') RETURNING id", (owner,)
        ).fetchone()[0]
        if status != "pending":
            conn.execute("UPDATE imagen.jobs SET status = 'running' WHERE id = %s", (job_id,))
        if status not in ("pending", "running"):
            conn.execute("UPDATE imagen.jobs SET status = %s WHERE id = %s", (status, job_id))
        if requested and status in ("pending", "running"):
            conn.execute("ALTER TABLE imagen.jobs DISABLE TRIGGER jobs_cancel_pending")
            conn.execute("UPDATE imagen.jobs SET cancel_requested = true WHERE id = %s", (job_id,))
            conn.execute("ALTER TABLE imagen.jobs ENABLE TRIGGER jobs_cancel_pending")
        ids.append(job_id)
    before = {job_id: job(conn, job_id) for job_id in ids}
    chosen = [ids[i % len(ids)] for i in targets]
    _as(conn, "alice")
    conn.execute("UPDATE imagen.jobs SET cancel_requested = %s WHERE id = ANY(%s)", (flag, chosen))
    _as(conn, None)
    for job_id, old in before.items():
        new = job(conn, job_id)
        asked = flag and job_id in chosen and old["owner"] == "alice"
        if asked and old["status"] == "pending" and not old["cancel_requested"]:
            assert new["status"] == "cancelled"
        else:
            assert new["status"] == old["status"]
        if old["owner"] != "alice" or old["status"] not in ("pending", "running"):
            assert new["cancel_requested"] == old["cancel_requested"]


# -- a job's place in line ----------------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    jobs=st.lists(
        st.tuples(st.integers(-2, 2), st.integers(-30, 0), st.booleans()), min_size=1, max_size=8
    )
)
def test_queue_positions_are_the_order_the_claim_takes(conn, jobs):
    conn.execute("TRUNCATE imagen.jobs CASCADE")
    ids = []
    for priority, seconds, cancelled in jobs:
        job_id = conn.execute(
            "INSERT INTO imagen.jobs (owner, prompt) VALUES ('alice', 'x') RETURNING id"
        ).fetchone()[0]
        conn.execute(
            "UPDATE imagen.jobs SET priority = %s, run_after = now() + make_interval(secs => %s) "
            "WHERE id = %s",
            (priority, seconds, job_id),
        )
        if cancelled:
            conn.execute("UPDATE imagen.jobs SET cancel_requested = true WHERE id = %s", (job_id,))
        ids.append(job_id)
    positions = {job_id: queue_position(conn, job_id) for job_id in ids}
    waiting = sorted((p, i) for i, p in positions.items() if p is not None)
    assert [p for p, _ in waiting] == list(range(1, len(waiting) + 1))
    claimed = []
    while row := conn.execute("SELECT id FROM imagen.claim_jobs('w', 60, 1)").fetchone():
        claimed.append(row[0])
    assert claimed == [i for _, i in waiting]


# -- imagen serve with no worker -----------------------------------------------------------------


@pytest.fixture
def served(db_url, tmp_path) -> Iterator[tuple[str, object]]:
    config = worker_config(tmp_path)
    settings = ServeSettings(api_keys={hash_key(ALICE_KEY): "alice", hash_key(BOB_KEY): "bob"})
    app = create_app(config, db_url, settings, thumbnails=tmp_path / "thumbnails")
    with serving(app) as url:
        yield url, config


def _client(url: str, key: str = ALICE_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_with_no_worker_the_sdk_is_told_so_without_the_whole_wait(served, conn, db_url):
    url, config = served
    first = submit(conn, "ahead in line")
    started = time.monotonic()
    with _client(url) as client:
        raw = client.images.with_raw_response.generate(model="mock", prompt="a lighthouse")
    assert raw.status_code == 202
    assert time.monotonic() - started < ServeSettings().wait_s  # not the whole serve.wait_s
    answer = json.loads(raw.text)
    job_id = answer["imagen"]["job"]
    assert answer["data"] == []
    assert answer["imagen"] == {
        "job": job_id,
        "status": "pending",
        "poll": f"/v1/jobs/{job_id}",
        "events": f"/v1/jobs/{job_id}/events",
        "position": 2,
        "workers": 0,
        "note": NO_WORKER,
    }
    headers = {"Authorization": f"Bearer {ALICE_KEY}"}
    shown = httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers).json()
    assert (shown["status"], shown["queue_position"]) == ("pending", 2)
    with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", headers=headers) as events:
        lines = events.iter_lines()
        assert next(lines) == "event: queued"
        queued = json.loads(next(lines).removeprefix("data: "))
        assert queued == {"id": job_id, "position": 2, "note": NO_WORKER}
        assert next(lines) == ""
        # The job ahead is cancelled: this one moves up, and the stream says so.
        conn.execute("UPDATE imagen.jobs SET cancel_requested = true WHERE id = %s", (first,))
        assert next(lines) == "event: queued"
        assert json.loads(next(lines).removeprefix("data: "))["position"] == 1

    # Cancelled at once, with no worker to do it.
    bobs = httpx.delete(f"{url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {BOB_KEY}"})
    assert bobs.status_code == 404
    cancelled = httpx.delete(f"{url}/v1/jobs/{job_id}", headers=headers)
    assert cancelled.json() == {"id": job_id, "cancel_requested": True, "status": "cancelled"}
    row = job(conn, job_id)
    assert (row["status"], row["attempts"]) == ("cancelled", 0)
    assert httpx.delete(f"{url}/v1/jobs/{job_id}", headers=headers).status_code == 409

    # Once a worker runs, the same call is answered with the image.
    with running(config, db_url), _client(url) as client:
        made = client.images.generate(model="mock", prompt="a lighthouse", size="32x32")
    assert len(made.data) == 1


def test_a_job_behind_busy_workers_gets_its_position_and_no_note(conn, db_url, tmp_path):
    config = worker_config(tmp_path)
    settings = ServeSettings(api_keys={hash_key(ALICE_KEY): "alice"}, wait_s=1)
    app = create_app(config, db_url, settings, thumbnails=tmp_path / "thumbnails")
    with serving(app) as url, running(config, db_url, concurrency=1):
        busy = submit(conn, "slow", options={"delay": 30})
        wait_for(conn, busy, ("running",))
        ahead = submit(conn, "next in line")
        with _client(url) as client:
            raw = client.images.with_raw_response.generate(model="mock", prompt="mine")
        assert raw.status_code == 202
        reference = json.loads(raw.text)["imagen"]
        assert (reference["status"], reference["position"], reference["workers"]) == (
            "pending",
            2,
            1,
        )
        assert "note" not in reference
        for other in (busy, ahead, reference["job"]):
            conn.execute("UPDATE imagen.jobs SET cancel_requested = true WHERE id = %s", (other,))
        wait_for(conn, busy, ("cancelled",))

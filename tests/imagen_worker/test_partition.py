"""A worker cut off from the database for longer than its lease stops acting on its job.

Worker A logs in as a role of its own, claims a Replicate job and records the prediction's
id; then its login is revoked and its connections killed. Worker B recovers the job once
A's lease has run out and resumes the same prediction. The job must run once and be paid
once (one prediction created, none cancelled), and A must leave nothing on disk.
"""

from __future__ import annotations

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

sys.path.insert(0, str(Path(__file__).parents[1] / "imagen_replicate"))
from replicate_standin import TOKEN, ReplicateStandIn

LEASE = "3"  # seconds; the heartbeat every second, a job let go after 2 without one


@pytest.fixture
def replicate_api() -> Iterator[ReplicateStandIn]:
    with ReplicateStandIn(TOKEN) as server:
        yield server


@pytest.fixture
def cut_off_role(conn) -> Iterator[str]:
    """A login role for worker A alone, so that it can be cut off and nobody else."""
    role = f"worker_a_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
    yield role
    conn.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
    conn.execute(f"DROP ROLE {role}")


def _worker(url: str, root: Path, name: str, api: ReplicateStandIn) -> subprocess.Popen:
    config = root / f"{name}.yaml"
    config.write_text(
        f"output:\n  directory: {root / name}\n"
        "backends:\n  flux:\n    type: replicate\n    model: black-forest-labs/flux-schnell\n"
        f"    base_url: {api.url}\n    poll_interval_s: 0.05\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IMAGEN_")},
        "IMAGEN_LOAD_PLUGINS": "imagen-worker,imagen-replicate",
        "REPLICATE_API_TOKEN": TOKEN,
        "HOME": str(root),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "PYTHONUNBUFFERED": "1",
    }
    with (root / f"{name}.log").open("w") as log:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "imagen", "--config", str(config), "worker"),
                *("--database-url", url, "--lease", LEASE, "--poll", "0.5", "--grace", "1"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


@pytest.mark.parametrize(
    "run_s",
    [
        8.0,  # A is still following the prediction when it lets go: it stops following
        1.0,  # A has saved the images when it lets go: it removes them
    ],
    ids=["mid-run", "images-saved"],
)
def test_a_worker_cut_off_past_its_lease_lets_go_and_leaves_nothing(
    conn, db_url, tmp_path, replicate_api, cut_off_role, run_s
):
    job_id = submit(conn, "a lighthouse", backend="flux", width=64, height=64, count=2)
    replicate_api.slow_next(run_s)
    a = _worker(make_conninfo(db_url, user=cut_off_role), tmp_path, "a", replicate_api)
    b = None
    try:
        deadline = time.monotonic() + 30
        while job(conn, job_id)["upstream_run_id"] is None:  # the prediction is A's, on record
            assert a.poll() is None, (tmp_path / "a.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "a.log").read_text()
            time.sleep(0.02)
        conn.execute(f"ALTER ROLE {cut_off_role} NOLOGIN")
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
            (cut_off_role,),
        )
        b = _worker(db_url, tmp_path, "b", replicate_api)
        row = wait_for(conn, job_id, ("done", "failed"), timeout=60)
        assert row["status"] == "done", row["error"]
        assert row["lease_owner"] is None
        assert row["progress"]["resume"] == "resumed"  # B re-attached to A's prediction
        time.sleep(1.5)  # A has let go by now (2 s without a renewal)
        a_log = (tmp_path / "a.log").read_text()
        assert "event=lease_lost" in a_log, a_log
        assert not [p for p in (tmp_path / "a").rglob("*") if p.is_file()], a_log
    finally:
        conn.execute(f"ALTER ROLE {cut_off_role} LOGIN")
        for worker in (a, b):
            if worker is not None:
                worker.send_signal(signal.SIGTERM)
        a_code = a.wait(60)
        b_code = b.wait(60) if b is not None else 0
    assert (a_code, b_code) == (0, 0), (tmp_path / "a.log").read_text()
    # Run once, paid once: one prediction, never cancelled; B's images are the job's.
    assert replicate_api.count("POST", "/v1/models/") == 1
    assert replicate_api.count("POST", "/v1/predictions/") == 0  # no …/cancel
    images = conn.execute(
        "SELECT local_path FROM imagen.images WHERE job_id = %s", (job_id,)
    ).fetchall()
    assert len(images) == 2
    assert all(Path(path).parent == tmp_path / "b" for (path,) in images)
    assert not [p for p in (tmp_path / "a").rglob("*") if p.is_file()]
    assert job(conn, job_id)["attempts"] == 2

"""The worker daemon against a real PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from worker_helpers import job, running, submit, wait_for, worker_config

from imagen import Backend, GeneratedImage, Result, TransientBackendError, hookimpl
from imagen.backends.drawing import render
from imagen_worker.notices import ProgressKey, read_progress_key


def notifications(conn, channel: str, until: Callable[[str], bool]) -> list[str]:
    """The payloads on ``channel`` up to the first that ``until`` accepts."""
    seen = []
    for note in conn.notifies(timeout=30):
        if note.channel == channel:
            seen.append(note.payload)
            if until(seen[-1]):
                return seen
    raise AssertionError(f"no such notification on {channel}; saw {seen}")


def test_notify_wakes_the_worker_and_results_are_recorded_together(conn, db_url, tmp_path):
    conn.execute("LISTEN imagen_progress")
    with running(worker_config(tmp_path), db_url, poll_s=3600):  # only NOTIFY can wake it in time
        job_id = submit(conn, "a lighthouse", width=64, height=64, count=2, seed=5)
        row = wait_for(conn, job_id, ("done",))
        announced = [n.payload for n in conn.notifies(timeout=1) if n.channel == "imagen_progress"]
    # Progress and the end, each as the job's token, a keyed hash: whoever listens learns
    # nothing of whose job moved (imagen serve holds the key and maps it back).
    token = read_progress_key(conn).token(job_id)
    assert len(announced) >= 2
    assert set(announced) == {token}
    assert token != ProgressKey(b"another database").token(job_id)
    images = conn.execute(
        "SELECT id, job_id, owner, local_path, seed, width FROM imagen.images ORDER BY id"
    ).fetchall()
    assert len(images) == 2
    assert row["image_id"] == images[0][0]
    assert {image[1] for image in images} == {job_id}
    assert all(Path(image[3]).is_file() for image in images)
    assert [image[4] for image in images] == [5, 6]
    assert row["attempts"] == 1
    assert row["lease_owner"] is None


def test_the_safety_poll_picks_up_a_missed_notification(conn, db_url, tmp_path, caplog):
    caplog.set_level("INFO", logger="imagen")
    conn.execute("ALTER TABLE imagen.jobs DISABLE TRIGGER jobs_inserted")
    early = submit(conn, width=32, height=32)  # before the worker: its catch-up claim
    with running(worker_config(tmp_path), db_url, poll_s=0.5):
        wait_for(conn, early, ("done",))
        missed = [submit(conn, width=32, height=32) for _ in range(2)]
        for job_id in missed:
            wait_for(conn, job_id, ("done",))
        wait_for(conn, submit(conn, width=32, height=32), ("done",))
        conn.execute("ALTER TABLE imagen.jobs ENABLE TRIGGER jobs_inserted")
        wait_for(conn, submit(conn, width=32, height=32), ("done",))
    events = [r.getMessage().split()[0] for r in caplog.records if "notify" in r.getMessage()]
    assert events == ["event=notify_missed", "event=notify_back"]  # once each, not per job
    warning = next(r for r in caplog.records if "notify_missed" in r.getMessage())
    assert warning.levelname == "WARNING"
    assert f"jobs=[{missed[0]}" in warning.getMessage()
    assert "running on the safety poll alone" in warning.getMessage()


def test_bad_rows_fail_with_a_clear_error(conn, db_url, tmp_path):
    with running(worker_config(tmp_path), db_url):
        unknown = submit(conn, backend="nope")
        huge = submit(conn, width=5000, height=64)  # within the queue's bounds, not the mock's
        fine = submit(conn, width=32, height=32)
        failed = wait_for(conn, unknown, ("failed",))
        assert 'no backend instance "nope"' in failed["error"]
        assert failed["error_kind"] == "config"
        failed = wait_for(conn, huge, ("failed",))
        assert "out of bounds" in failed["error"]
        assert failed["error_kind"] == "request"
        wait_for(conn, fine, ("done",))  # the worker carried on


def test_transient_failures_are_retried_then_fail_after_max_attempts(conn, db_url, tmp_path):
    with running(worker_config(tmp_path), db_url, retry_base_s=0.1):
        job_id = submit(conn, options={"fail": "transient"}, max_attempts=3)
        row = wait_for(conn, job_id, ("failed",))
    assert row["attempts"] == 3
    assert row["error"].startswith("gave up after 3 attempts: ")


class _FlakyOnce(Backend):
    calls = 0

    def generate(self, request, context):
        type(self).calls += 1
        if type(self).calls == 1:
            raise TransientBackendError("upstream 503", retry_after=0.1)
        return Result([GeneratedImage.from_bytes(render("x", 1, 16, 16), "image/png")])


def test_retry_then_success(conn, db_url, tmp_path, register_plugin):
    class Plugin:
        @staticmethod
        @hookimpl
        def imagen_backend():
            return {"flaky": _FlakyOnce}

    register_plugin(Plugin(), "flaky")
    config = worker_config(tmp_path, {"flaky": {"type": "flaky"}})
    with running(config, db_url):
        row = wait_for(conn, submit(conn), ("done",))
    assert row["attempts"] == 2


def test_cancel_pending_and_running(conn, db_url, tmp_path):
    with running(worker_config(tmp_path), db_url, concurrency=1):
        slow = submit(conn, options={"delay": 30})
        waiting = submit(conn)
        wait_for(conn, slow, ("running",))
        conn.execute("UPDATE imagen.jobs SET cancel_requested = true WHERE id = %s", (waiting,))
        conn.execute("UPDATE imagen.jobs SET cancel_requested = true WHERE id = %s", (slow,))
        assert wait_for(conn, slow, ("cancelled",), timeout=10)["status"] == "cancelled"
        assert wait_for(conn, waiting, ("cancelled",), timeout=10)["status"] == "cancelled"


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


def test_a_killed_worker_is_recovered_by_another(conn, db_url, home):
    home.write_config(f"output:\n  directory: {home.root / 'out'}\n")
    job_id = submit(conn, options={"delay": 20})
    doomed = _worker_process(db_url, home, "--lease", "2")
    wait_for(conn, job_id, ("running",))
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=10)
    conn.execute("UPDATE imagen.jobs SET options = '{}' WHERE id = %s", (job_id,))  # quick retry
    rescuer = _worker_process(db_url, home, "--poll", "0.5", "--lease", "2")
    try:
        row = wait_for(conn, job_id, ("done",), timeout=60)
    finally:
        rescuer.send_signal(signal.SIGTERM)
        _, stderr = rescuer.communicate(timeout=30)
    assert row["attempts"] == 2
    assert rescuer.returncode == 0, stderr


def test_sigterm_releases_running_jobs_without_counting_the_attempt(conn, db_url, home):
    home.write_config(f"output:\n  directory: {home.root / 'out'}\n")
    job_id = submit(conn, options={"delay": 30})
    process = _worker_process(db_url, home, "--grace", "0.5")
    wait_for(conn, job_id, ("running",))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    row = job(conn, job_id)
    assert (row["status"], row["attempts"], row["lease_owner"]) == ("pending", 0, None)


def test_released_and_requeued_jobs_are_announced_to_the_workers(conn, db_url, home):
    conn.execute("LISTEN imagen_jobs")
    home.write_config(f"output:\n  directory: {home.root / 'out'}\n")
    job_id = submit(conn, options={"delay": 30})
    process = _worker_process(db_url, home, "--grace", "0.1")
    wait_for(conn, job_id, ("running",))
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    events = notifications(conn, "imagen_jobs", lambda n: json.loads(n)["event"] == "released")
    assert [json.loads(n) for n in events] == [{"event": "inserted"}, {"event": "released"}]
    conn.execute("UPDATE imagen.jobs SET status = 'failed' WHERE id = %s", (job_id,))
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    home.run("jobs", "retry", str(job_id), "--database-url", db_url, check=True)
    assert [json.loads(n) for n in notifications(conn, "imagen_jobs", lambda n: True)] == [
        {"event": "requeued"}
    ]


def test_four_workers_run_500_jobs_each_exactly_once(conn, db_url, home):
    home.write_config(
        f"output:\n  directory: {home.root / 'out'}\n  write_metadata_json: false\n"
        "  naming: '{index}-{seed}-{time}.{ext}'\n"
    )
    ids = [submit(conn, f"job {n}", width=16, height=16, seed=n) for n in range(500)]
    workers = [
        _worker_process(db_url, home, "--concurrency", "4", "--poll", "0.5") for _ in range(4)
    ]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = conn.execute(
                "SELECT count(*) FROM imagen.jobs WHERE status = 'done'"
            ).fetchone()[0]
            if done == len(ids):
                break
            time.sleep(0.2)
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            process.communicate(timeout=60)
    assert conn.execute(
        "SELECT count(*), max(attempts) FROM imagen.jobs WHERE status = 'done'"
    ).fetchone() == (500, 1)
    per_job = conn.execute("SELECT job_id, count(*) FROM imagen.images GROUP BY job_id").fetchall()
    assert len(per_job) == 500
    assert {count for _, count in per_job} == {1}


def test_jobs_commands(conn, db_url, home):
    env_url = ["--database-url", db_url]
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    job_id = int(
        home.run(
            "jobs",
            "submit",
            "a fox",
            "--width",
            "32",
            "--height",
            "32",
            "--owner",
            "bob",
            *env_url,
            check=True,
        ).stdout
    )
    listed = json.loads(home.run("jobs", "list", "--json", *env_url, check=True).stdout)
    assert listed[0]["id"] == job_id
    assert listed[0]["owner"] == "bob"
    assert (
        home.run("jobs", "cancel", str(job_id), *env_url, check=True).stdout.strip()
        == f"job {job_id}: cancelled"
    )
    assert job(conn, job_id)["status"] == "cancelled"
    assert (
        home.run("jobs", "retry", str(job_id), *env_url, check=True).stdout.strip()
        == f"job {job_id}: queued again"
    )
    again = json.loads(
        home.run("jobs", "cancel", str(job_id), "--json", *env_url, check=True).stdout
    )
    assert again == {"id": job_id, "outcome": "cancelled"}
    assert json.loads(
        home.run("jobs", "retry", str(job_id), "--json", *env_url, check=True).stdout
    ) == {"id": job_id, "outcome": "queued again"}
    shown = json.loads(home.run("jobs", "show", str(job_id), "--json", *env_url, check=True).stdout)
    assert shown["status"] == "pending"
    for status in ("running", "done"):  # along the lifecycle the database enforces
        conn.execute(
            "UPDATE imagen.jobs SET status = %s, finished_at = now() - interval '40 days' "
            "WHERE id = %s",
            (status, job_id),
        )
    pruned = home.run("jobs", "prune", "--older-than", "30", *env_url, check=True)
    assert pruned.stdout.strip() == "deleted 1 finished job(s) older than 30 days"
    missing = home.run("jobs", "show", "999999", *env_url)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "imagen: no job 999999"


def test_a_database_connection_killed_mid_run_is_survived(conn, db_url, tmp_path):
    with running(worker_config(tmp_path), db_url, poll_s=1.0):
        job_id = submit(conn, options={"delay": 2})
        wait_for(conn, job_id, ("running",))
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
        assert killed >= 1  # the listener, at least
        row = wait_for(conn, job_id, ("done",))
        assert (
            conn.execute(
                "SELECT count(*) FROM imagen.images WHERE job_id = %s", (job_id,)
            ).fetchone()[0]
            == 1
        )
        later = submit(conn, width=16, height=16)  # the worker listens again
        wait_for(conn, later, ("done",))
    assert row["attempts"] == 1


def test_the_worker_logs_one_logfmt_line_per_event(conn, db_url, home):
    home.write_config(f"output:\n  directory: {home.root / 'out'}\n")
    job_id = submit(conn, width=16, height=16)
    failing = submit(conn, backend="nope")
    process = _worker_process(db_url, home, "--poll", "0.5")
    wait_for(conn, job_id, ("done",))
    wait_for(conn, failing, ("failed",))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    lines = stderr.splitlines()
    assert any(line.startswith("imagen: event=listening worker=") for line in lines)
    assert f"imagen: event=claimed job={job_id} attempt=1 max_attempts=3" in lines
    assert any(
        line.startswith(f"imagen: event=done job={job_id} images=1 duration_s=") for line in lines
    )
    assert any(
        line.startswith(f'imagen: event=failed job={failing} error="no backend instance')
        for line in lines
    )


class _Resumable(Backend):
    calls: ClassVar[list[tuple[str, str | None]]] = []

    def generate(self, request, context):
        context.report_run_id("run-new")
        type(self).calls.append(("generate", None))
        return Result([GeneratedImage.from_bytes(render("x", 1, 16, 16), "image/png")])

    def resume(self, run_id, request, context):
        type(self).calls.append(("resume", run_id))
        if run_id == "run-gone":
            from imagen import RunLostError

            raise RunLostError(f"run {run_id} was lost")
        return Result([GeneratedImage.from_bytes(render("x", 2, 16, 16), "image/png")])


def test_a_recovered_job_resumes_its_run_and_resubmits_only_a_lost_one(
    conn, db_url, tmp_path, register_plugin
):
    class Plugin:
        @staticmethod
        @hookimpl
        def imagen_backend():
            return {"resumable": _Resumable}

    register_plugin(Plugin(), "resumable")
    _Resumable.calls = []
    config = worker_config(tmp_path, {"r": {"type": "resumable"}})
    kept = submit(conn)
    lost = submit(conn)
    conn.execute("UPDATE imagen.jobs SET upstream_run_id = 'run-kept' WHERE id = %s", (kept,))
    conn.execute("UPDATE imagen.jobs SET upstream_run_id = 'run-gone' WHERE id = %s", (lost,))
    with running(config, db_url):
        kept_row = wait_for(conn, kept, ("done",))
        lost_row = wait_for(conn, lost, ("done",))
    assert ("resume", "run-kept") in _Resumable.calls
    assert kept_row["progress"]["resume"] == "resumed"
    assert kept_row["upstream_run_id"] == "run-kept"
    assert lost_row["progress"]["resume"] == 'resubmitted: backend "r": run run-gone was lost'
    assert lost_row["upstream_run_id"] == "run-new"  # the new run, recorded at once
    assert _Resumable.calls.count(("generate", None)) == 1  # only the lost one paid again


def test_jobs_submit_refuses_a_job_that_could_never_run_and_queues_nothing(conn, db_url, home):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    url = ["--database-url", db_url]
    cases = {
        ("",): "imagen: prompt: must not be empty or only white space",
        ("x", "-b", "nosuch"): 'imagen: backend: no backend instance "nosuch" (configured: mock)',
        ("x", "--opt", "delay=abc"): (
            "imagen: backend \"mock\": option delay must be a number of seconds, not 'abc'"
        ),
        ("x", "--width", "13"): (
            'imagen: backend "mock": width 13 is out of bounds for the mock backend '
            "(16 to 4096 pixels)"
        ),
        ("x", "--opt", "dealy=1"): (
            'imagen: backend "mock" has no option "dealy" (did you mean "delay"? '
            "known: delay, fail, format)"
        ),
        ("x", "--seed", str(2**53 - 1), "-n", "2"): (
            f"imagen: seed: image 2 of the job would use seed {2**53}, beyond {2**53 - 1} "
            "(image i uses seed + i - 1)"
        ),
        ("x", "--priority", str(2**31)): (
            f"imagen: Invalid value for '--priority': {2**31} is not in the range "
            f"{-(2**31)}<=x<={2**31 - 1} (imagen jobs submit --help)"
        ),
    }
    for args, message in cases.items():
        proc = home.run("jobs", "submit", *args, *url)
        assert (proc.returncode, proc.stderr) == (2, message + "\n"), args
    assert conn.execute("SELECT count(*) FROM imagen.jobs").fetchone()[0] == 0

"""``imagen jobs`` as people use it: real processes, a real terminal (a pty) where it matters."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from worker_helpers import job, running, serving, submit, wait_for, worker_config

from imagen_worker.fleet import NO_WORKER
from imagen_worker.serve.app import create_app
from imagen_worker.serve.settings import ServeSettings, hash_key
from imagen_worker.watching import exit_code, progress_of

ALICE_KEY = "imk_alice-jobs-cli-key"
# The progress line's bar, as imagen generate draws it (imagen/cli/progress.py).
BAR = re.compile(r"\r([^\r\n]+?): (\[[#-]{20}\] \d+/\d+)")


class Terminal:
    """A command whose stderr is a real terminal (a pty): what a person at it would see."""

    def __init__(self, home, *args: str) -> None:
        self.main, other = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imagen", *args],
            cwd=home.cwd,
            env={**home.env, "COLUMNS": "120"},
            stdout=subprocess.PIPE,
            stderr=other,
            text=True,
        )
        os.close(other)
        self._seen = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.main, 4096)
            except OSError:  # the command closed its end
                return
            if not chunk:
                return
            with self._lock:
                self._seen += chunk

    @property
    def screen(self) -> str:
        with self._lock:
            return self._seen.decode(errors="replace")

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            assert self.process.poll() is None or text in self.screen, self.screen
            assert time.monotonic() < deadline, f"{text!r} never showed: {self.screen!r}"
            time.sleep(0.05)

    def finish(self) -> tuple[int, str, str]:
        stdout, _ = self.process.communicate(timeout=120)
        self._reader.join(10)
        os.close(self.main)
        return self.process.returncode, stdout, self.screen


@pytest.fixture
def queue(home, db_url):
    """The worker plugin on for the home's commands, pointed at this test's database."""
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    home.env["IMAGEN_DATABASE_URL"] = db_url
    home.write_config(f"output:\n  directory: {home.root / 'out'}\n")
    return home


# -- watch and submit --wait -------------------------------------------------------------------


def test_watch_shows_the_progress_line_of_generate_from_the_queue_to_the_images(
    queue, conn, db_url
):
    job_id = submit(conn, "a lighthouse", width=32, height=32, options={"delay": 3})
    watching = Terminal(queue, "jobs", "watch", str(job_id))
    watching.wait_for("queued (position 1) (no worker is running)")
    watching.wait_for(NO_WORKER)  # and the whole sentence once, as a warning
    with running(worker_config(queue.root), db_url):
        code, stdout, screen = watching.finish()
    assert code == 0, screen
    paths = stdout.split()
    row = wait_for(conn, job_id, ("done",))
    assert paths == [
        r[0]
        for r in conn.execute(
            "SELECT local_path FROM imagen.images WHERE job_id = %s ORDER BY id", (job_id,)
        )
    ]
    assert Path(paths[0]).is_file()
    assert row["image_id"] is not None
    assert screen.count(f"imagen: job {job_id}: {NO_WORKER}") == 1
    bars = BAR.findall(screen)
    assert bars, screen
    assert {label for label, _ in bars} == {f"job {job_id} on mock"}
    # The same line imagen generate draws for the same backend.
    generating = Terminal(queue, "generate", "a lighthouse", "--opt", "delay=1", "--size", "32x32")
    code, _, drawn = generating.finish()
    assert code == 0, drawn
    assert {bar for _, bar in BAR.findall(drawn)} & {bar for _, bar in bars}


@pytest.mark.parametrize(
    ("fields", "code", "error"),
    [
        ({"options": {"fail": "permanent"}}, 4, "simulated permanent failure"),
        ({"options": {"fail": "transient"}, "max_attempts": 1}, 5, "gave up after 1 attempts"),
        ({"options": {"fail": "config"}}, 3, "simulated configuration error"),
        # Refused by the backend's check before it ran, as imagen generate refuses it.
        ({"width": 13, "height": 13}, 2, "width 13 is out of bounds"),
        ({"options": {"delay": "soon"}}, 2, "option delay must be a number of seconds"),
    ],
    ids=["permanent", "transient", "config", "refused-size", "refused-option"],
)
def test_watch_exits_with_the_code_of_how_the_job_ended(queue, conn, db_url, fields, code, error):
    job_id = submit(conn, "x", **fields)
    with running(worker_config(queue.root), db_url):
        watched = queue.run("jobs", "watch", str(job_id))
    assert watched.returncode == code, watched.stderr
    assert watched.stdout == ""
    (line,) = watched.stderr.splitlines()
    assert line.startswith(f"imagen: job {job_id} failed: ")
    assert error in line
    assert job(conn, job_id)["status"] == "failed"


def test_submit_wait_prints_the_images_and_fails_as_the_job_failed(queue, conn, db_url):
    with running(worker_config(queue.root), db_url):
        size = ("--width", "32", "--height", "32")
        done = queue.run("jobs", "submit", "a fox", *size, "-n", "2", "--wait")
        failed = queue.run("jobs", "submit", "a fox", "--opt", "fail=permanent", "--wait")
        as_json = queue.run("jobs", "submit", "a hare", *size, "--wait", "--json")
    assert done.returncode == 0, done.stderr
    paths = done.stdout.split()
    assert len(paths) == 2
    assert all(Path(p).is_file() for p in paths)
    assert failed.returncode == 4
    assert failed.stderr.strip().endswith(
        'failed: backend "mock": simulated permanent failure (option fail=permanent)'
    )
    shown = json.loads(as_json.stdout)
    assert (shown["status"], len(shown["images"])) == ("done", 1)
    assert shown["finished_at"].endswith("Z")


def test_ctrl_c_stops_watching_and_leaves_the_job_alone(queue, conn, db_url):
    with running(worker_config(queue.root), db_url):
        job_id = submit(conn, "slow", options={"delay": 30})
        wait_for(conn, job_id, ("running",))
        watching = Terminal(queue, "jobs", "watch", str(job_id))
        watching.wait_for(f"job {job_id} on mock: ")
        watching.process.send_signal(signal.SIGINT)
        code, stdout, screen = watching.finish()
        assert (code, stdout) == (130, "")
        assert f"imagen: stopped watching job {job_id}; it goes on" in screen
        assert job(conn, job_id)["status"] == "running"
        cancelled = queue.run("jobs", "cancel", str(job_id))
        assert cancelled.stdout.strip() == f"job {job_id}: cancel requested"
        watched = queue.run("jobs", "watch", str(job_id))
    assert watched.returncode == 130
    assert watched.stderr.strip() == f"imagen: job {job_id} was cancelled"
    assert queue.run("jobs", "watch", "999999").stderr.strip() == "imagen: no job 999999"


def test_exit_codes_and_progress_read_rows_defensively():
    assert exit_code({"status": "done"}) == 0
    assert exit_code({"status": "cancelled"}) == 130
    codes = {kind: exit_code({"status": "failed", "error_kind": kind}) for kind in (
        "request", "config", "backend", "transient", "budget", "output", "internal", "lost", None
    )}  # fmt: skip
    assert codes == {
        "request": 2, "config": 3, "backend": 4, "transient": 5, "budget": 8, "output": 7,
        "internal": 1, "lost": 4, None: 4,
    }  # fmt: skip
    for hostile in (None, [], {"last": 5}, {"last": {"kind": "nope"}},
                    {"last": {"kind": "step", "current": 9, "total": 2}},
                    {"last": {"kind": ["step"]}}):  # fmt: skip
        assert progress_of({"progress": hostile}).kind == "started"
    step = progress_of({"progress": {"last": {"kind": "step", "current": 3, "total": 10}}})
    assert (step.kind, step.current, step.total) == ("step", 3, 10)


# -- list and show -----------------------------------------------------------------------------


def test_list_and_show_have_a_header_local_times_backends_and_the_apis_iso_times(
    queue, conn, db_url, tmp_path
):
    conn.execute(f"ALTER DATABASE \"{conn.info.dbname}\" SET timezone = 'America/Denver'")
    queue.env["TZ"] = "Asia/Tokyo"
    first = int(queue.run("jobs", "submit", "a fox", check=True).stdout)
    second = int(
        queue.run("jobs", "submit", "a hare\nin the snow", "-b", "mock", check=True).stdout
    )
    listed = queue.run("jobs", "list", check=True)
    header, *lines = listed.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "CREATED", "BACKEND", "OWNER", "PROMPT"]
    created = {
        row[0]: row[1].astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M")
        for row in conn.execute("SELECT id, created_at FROM imagen.jobs")
    }
    owner = os.environ.get("USER") or "local"
    assert lines[0].split() == [str(second), "pending", *created[second].split(), "mock", owner,
                                "a", "hare", "in", "the", "snow"]  # fmt: skip
    assert lines[1].split() == [str(first), "pending", *created[first].split(), "(default)",
                                owner, "a", "fox"]  # fmt: skip

    # JSON times are ISO 8601 in UTC, the very strings the HTTP API gives for the same job.
    config = worker_config(tmp_path)
    settings = ServeSettings(api_keys={hash_key(ALICE_KEY): owner})
    app = create_app(config, db_url, settings, thumbnails=tmp_path / "thumbnails")
    with serving(app) as url:
        api = httpx.get(f"{url}/v1/jobs/{first}", headers={"Authorization": f"Bearer {ALICE_KEY}"})
    as_json = {row["id"]: row for row in json.loads(queue.run("jobs", "list", "--json").stdout)}
    assert as_json[first]["created_at"] == api.json()["created_at"]
    assert api.json()["created_at"].endswith("Z")
    shown = json.loads(queue.run("jobs", "show", str(first), "--json").stdout)
    assert shown["created_at"] == api.json()["created_at"]
    assert shown["run_after"].endswith("Z")
    text = queue.run("jobs", "show", str(first)).stdout
    assert f"created_at:        {created[first]}:" in text
    assert "JST" in text
    assert " " not in as_json[first]["created_at"]  # never the old "2025-06-01 14:03:07+00:00"
    assert (
        as_json[first]["created_at"].replace("Z", "+00:00")[:19]
        == (
            conn.execute("SELECT created_at FROM imagen.jobs WHERE id = %s", (first,))
            .fetchone()[0]
            .astimezone(UTC)
            .isoformat()[:19]
        )
    )


def test_the_embedded_database_is_named_once_and_where_it_helps(home):
    """Issue 15: every queue command repeated the "using the embedded PostgreSQL" line."""
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    line = "imagen: no database configured: using the embedded PostgreSQL in"
    first = home.run("jobs", "submit", "a fox", check=True)
    assert first.stderr.count(line) == 1  # made now: where the queue lives is news
    assert f"imagen: job 1: {NO_WORKER}" in first.stderr.splitlines()
    for args in (["jobs", "list"], ["jobs", "show", "1"], ["jobs", "cancel", "1"]):
        later = home.run(*args, check=True)
        assert line not in later.stderr, args
    checked = home.run("db", "status", check=True)  # about the database: it says which
    assert checked.stderr.count(line) == 1

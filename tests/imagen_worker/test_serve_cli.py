"""``imagen serve`` and ``imagen serve-key`` as a user runs them: real processes."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import openai
from worker_helpers import job, wait_for

from imagen_worker.fleet import NO_WORKER, NO_WORKER_FOR_JOBS
from imagen_worker.schema import available


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _configure(home) -> str:
    """An imagen.yaml with a key made by ``imagen serve-key``; returns the key."""
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    made = home.run("serve-key", "alice", check=True)
    key = re.search(r"^\s+(imk_\S+)$", made.stdout, re.MULTILINE).group(1)
    digest = re.search(r'^\s+"([0-9a-f]{64})": alice$', made.stdout, re.MULTILINE).group(1)
    home.write_config(
        f"""
        output:
          directory: {home.root / "out"}
        serve:
          api_keys:
            "{digest}": alice
        """
    )
    return key


class Served:
    url: str
    stderr: str = ""
    returncode: int | None = None


@contextmanager
def _serving(
    home, *args: str, worker: tuple[str, ...] = ("--with-worker", "-c", "2")
) -> Iterator[Served]:
    """``imagen serve --with-worker -c 2 ARGS`` in a process of its own, until SIGTERM.

    :param worker: the flags that choose the worker in place of ``--with-worker -c 2``.
    """
    port = _free_port()
    command = [sys.executable, "-m", "imagen", "serve", *worker, "--port", str(port)]
    server = subprocess.Popen(
        [*command, *args],
        cwd=home.cwd,
        env=home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served()
    served.url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{served.url}/openapi.json").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, "imagen serve did not start"
            time.sleep(0.1)
        yield served
    finally:
        server.send_signal(signal.SIGTERM)
        _, served.stderr = server.communicate(timeout=60)
        served.returncode = server.returncode


def test_serve_with_worker_generates_for_the_openai_sdk_and_stops_on_sigterm(home, db_url):
    key = _configure(home)
    with _serving(home, "--database-url", db_url) as served:
        with openai.OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0) as client:
            result = client.images.generate(model="mock", prompt="a lighthouse", size="64x64")
        assert len(result.data) == 1
        assert (home.root / "out").is_dir()
    assert served.returncode == 0, served.stderr
    url = served.url
    assert f"imagen serve: {url}/ (the gallery), {url}/v1 (the API)" in served.stderr
    assert key not in served.stderr  # the key itself is never printed by the server
    assert "no worker is running" not in served.stderr


def test_serve_without_a_worker_says_so_at_start_and_to_each_caller(home, db_url, conn):
    """Issue 15: no warning, requests hung for serve.wait_s, and a cancel left jobs pending."""
    key = _configure(home)
    with (
        _serving(home, "--database-url", db_url, worker=()) as served,
        openai.OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0) as client,
    ):
        raw = client.images.with_raw_response.generate(model="mock", prompt="a lighthouse")
        assert raw.status_code == 202
        reference = raw.parse().model_extra["imagen"]
        assert (reference["position"], reference["workers"]) == (1, 0)
        assert reference["note"] == NO_WORKER
        headers = {"Authorization": f"Bearer {key}"}
        cancelled = httpx.delete(f"{served.url}/v1/jobs/{reference['job']}", headers=headers)
        assert cancelled.json()["status"] == "cancelled"
        assert job(conn, reference["job"])["status"] == "cancelled"
        worker = subprocess.Popen(
            [sys.executable, "-m", "imagen", "worker", "--database-url", db_url],
            cwd=home.cwd,
            env=home.env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            made = client.images.generate(model="mock", prompt="a lighthouse", size="32x32")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=60)
        assert len(made.data) == 1
    assert served.returncode == 0, served.stderr
    assert f"imagen: {NO_WORKER_FOR_JOBS}" in served.stderr.splitlines()


def test_with_worker_a_leftover_slow_job_does_not_hold_up_a_new_sdk_call(home, db_url, conn):
    """Issue 15: at -c 1 a new user's first call waited 39.5 s behind a leftover 60 s job."""
    key = _configure(home)
    assert "[default: 4; x>=1]" in " ".join(home.run("serve", "--help", check=True).stdout.split())
    with _serving(home, "--database-url", db_url, worker=("--with-worker",)) as served:
        headers = {"Authorization": f"Bearer {key}"}
        body = {"prompt": "leftover", "options": {"delay": 60}}
        slow = httpx.post(f"{served.url}/v1/jobs", json=body, headers=headers).json()["id"]
        wait_for(conn, slow, ("running",))
        with openai.OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0) as client:
            made = client.images.generate(model="mock", prompt="a lighthouse", size="32x32")
        assert len(made.data) == 1
        assert job(conn, slow)["status"] == "running"  # it did not wait for the slow one
        httpx.delete(f"{served.url}/v1/jobs/{slow}", headers=headers)
    assert served.returncode == 0, served.stderr


def test_with_no_database_it_serves_from_the_embedded_one_migrated_at_start(home):
    key = _configure(home)
    with _serving(home) as served:
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(2):
            body = {"prompt": "x", "options": {"delay": 30}}
            job = httpx.post(f"{served.url}/v1/jobs", json=body, headers=headers)
            assert job.status_code == 201, job.text
        deadline = time.monotonic() + 30
        running = []
        while len(running) < 2:  # -c 2: both at once
            assert time.monotonic() < deadline, running
            time.sleep(0.1)
            listed = httpx.get(f"{served.url}/v1/jobs?status=running", headers=headers)
            running = listed.json()["data"]
        for job in running:  # not left to the worker's grace period at the stop
            httpx.delete(f"{served.url}/v1/jobs/{job['id']}", headers=headers)
    assert served.returncode == 0, served.stderr
    assert "using the embedded PostgreSQL" in served.stderr
    assert f"applied {len(available())} migration(s) to the embedded database" in served.stderr


def test_a_database_that_needs_migrating_is_refused_in_words(home, empty_db_url):
    _configure(home)
    needs = f"needs {len(available())} migration(s): run imagen db migrate"
    proc = home.run("serve", "--database-url", empty_db_url)
    assert proc.returncode == 3
    needs = f"needs {len(available())} migration(s): run imagen db migrate"
    assert needs in proc.stderr
    worker = home.run("worker", "--database-url", empty_db_url)
    assert worker.returncode == 3
    assert needs in worker.stderr


def test_a_bad_serve_section_is_a_config_error_naming_file_line_and_key(home):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    home.write_config("serve:\n  max_images: 0\n")
    proc = home.run("serve")
    assert proc.returncode == 3
    assert "imagen.yaml:2: serve.max_images: must be at least 1, not 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sigterm_ends_event_streams_and_hands_the_worker_jobs_back(home, db_url, conn):
    """A client following an unfinished job's events no longer holds a stop up."""
    key = _configure(home)
    headers = {"Authorization": f"Bearer {key}"}
    ended = threading.Event()

    def follow(url: str) -> None:
        with httpx.stream("GET", url, headers=headers, timeout=120) as events:
            for _ in events.iter_lines():
                pass
        ended.set()

    with _serving(home, "--database-url", db_url, "--grace", "1") as served:
        job = httpx.post(
            f"{served.url}/v1/jobs",
            json={"prompt": "slow", "options": {"delay": 600}},
            headers=headers,
        ).json()
        deadline = time.monotonic() + 30
        while (
            httpx.get(f"{served.url}/v1/jobs/{job['id']}", headers=headers).json()["status"]
            != "running"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        follower = threading.Thread(
            target=follow, args=(f"{served.url}/v1/jobs/{job['id']}/events",), daemon=True
        )
        follower.start()
        time.sleep(0.5)  # the stream is open
    assert served.returncode == 0, served.stderr
    assert ended.is_set()
    row = conn.execute(
        "SELECT status, attempts FROM imagen.jobs WHERE id = %s", (job["id"],)
    ).fetchone()
    assert row == ("pending", 0)  # released by the --with-worker worker, not left held

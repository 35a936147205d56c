"""The worker feeds the same history as ``imagen generate``: ``imagen history`` shows both."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from worker_helpers import running, submit, wait_for, worker_config


def test_worker_images_are_in_the_history(conn, db_url, tmp_path):
    with running(worker_config(tmp_path), db_url):
        done = submit(conn, "a lighthouse from the queue", width=32, height=32, count=2)
        failed = submit(conn, "never made", width=32, height=32, options={"fail": "permanent"})
        wait_for(conn, done, ("done",))
        wait_for(conn, failed, ("failed",))
    env = {**os.environ, "IMAGEN_LOAD_PLUGINS": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "imagen", "history", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    entries = json.loads(proc.stdout)
    assert [e["prompt"] for e in entries] == ["a lighthouse from the queue"] * 2
    assert {(e["entry"], e["job_id"], e["owner"]) for e in entries} == {("worker", done, "alice")}
    paths = {row[0] for row in conn.execute("SELECT local_path FROM imagen.images")}
    assert {e["path"] for e in entries} == paths

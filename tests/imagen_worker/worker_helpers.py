"""Helpers the worker's test modules share: a config, a running worker, jobs to wait for."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from psycopg.rows import dict_row

from imagen.config import parse_config
from imagen.yamlfile import Located
from imagen_worker.daemon import Worker, WorkerSettings


def worker_config(tmp_path: Path, backends: dict | None = None):
    """A config writing into ``tmp_path`` with the ``mock`` backend (or ``backends``)."""
    return parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out"), "write_metadata_json": False},
                "backends": backends or {"mock": {"type": "mock"}},
            }
        )
    )


@contextmanager
def running(config, url: str, **settings) -> Iterator[Worker]:
    worker = Worker(config, url, WorkerSettings(**{"poll_s": 30.0, **settings}))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    time.sleep(0.3)  # listening
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(60)
        assert not thread.is_alive()


def submit(conn, prompt: str = "a cat", **fields) -> int:
    columns = ["owner", "prompt", *fields]
    values = [
        "alice",
        prompt,
        *(json.dumps(v) if isinstance(v, dict) else v for v in fields.values()),
    ]
    sql = f"INSERT INTO imagen.jobs ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(values))}) RETURNING id"
    return conn.execute(sql, values).fetchone()[0]


def job(conn, job_id: int) -> dict:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute("SELECT * FROM imagen.jobs WHERE id = %s", (job_id,)).fetchone()


def wait_for(conn, job_id: int, statuses: tuple[str, ...], timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = job(conn, job_id)
        if row["status"] in statuses:
            return row
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is {job(conn, job_id)['status']}, not {statuses}")


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, lifespan and all; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive()

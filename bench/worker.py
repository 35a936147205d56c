"""Worker benchmark: queue overhead, full-pipeline throughput, pickup latency, scaling.

    hatch run bench:worker                 # embedded PostgreSQL in a temp dir
    IMAGEN_BENCH_DATABASE_URL=postgresql://… hatch run bench:worker

Each part uses a fresh database on the same server. Numbers are from one worker process,
beside pgqueuer (the ``bench`` hatch environment installs it) on the same server, in the
same run:

- queue overhead: jobs/s draining a backlog of jobs that do nothing (claim, record done),
  timed from the consumer's start, imagen and pgqueuer (8 at a time each), the median of
  three runs each;
- full pipeline: jobs/s with the built-in backend at 16x16 (render, write, record);
- pickup latency: insert committed → job function entered, p50/p95, one job at a time,
  woken by NOTIFY, imagen and pgqueuer;
- scaling: jobs/s with a backend that sleeps 1 s, at concurrency 1, 4, 16.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from postgres import database, server

from imagen import Backend, GeneratedImage, Result, hookimpl
from imagen.backends.drawing import render
from imagen.config import parse_config
from imagen.plugins import get_plugin_manager
from imagen.registry import reset
from imagen.yamlfile import Located
from imagen_worker.daemon import Worker, WorkerSettings

_PNG = render("bench", 1, 16, 16)


class Sleeper(Backend):
    def generate(self, request: Any, context: Any) -> Result:
        context.wait(1.0)
        return Result([GeneratedImage.from_bytes(_PNG, "image/png")])


class _Plugin:
    @staticmethod
    @hookimpl
    def imagen_backend() -> dict[str, Any]:
        return {"sleeper": Sleeper}


class NoopWorker(Worker):
    """Claims and records jobs without generating: the queue's own cost."""

    entered: list[float] = []  # noqa: RUF012 (a benchmark's scratch list)

    def _generate(self, row: dict[str, Any], context: Any) -> Any:
        self.entered.append(time.perf_counter())
        return type("Outcome", (), {"images": [], "duration_s": 0.0})()


@contextmanager
def running(worker: Worker, settle_s: float = 0.3) -> Iterator[Worker]:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    time.sleep(settle_s)  # listening before the first insert
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(120)


def _config(out: Path, backend: str = "mock") -> Any:
    return parse_config(
        Located(
            {
                "output": {
                    "directory": str(out),
                    "write_metadata_json": False,
                    "naming": "{index}-{seed}-{time}.{ext}",
                },
                "backends": {backend: {"type": backend}},
            }
        )
    )


def _insert(conn: psycopg.Connection, count: int, **fields: Any) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO imagen.jobs (owner, prompt, width, height, backend) VALUES ('bench', %s, 16, 16, %s)",
            [(f"job {n}", fields.get("backend")) for n in range(count)],
        )


def _drain(conn: psycopg.Connection, count: int, started: Any, timeout: float = 600) -> float:
    """Seconds from ``started`` (the server's clock) until the last of ``count`` jobs is done.

    Read from the rows' own ``finished_at``, so how often this polls does not matter.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, last = conn.execute(
            "SELECT count(*), max(finished_at) FROM imagen.jobs WHERE status = 'done'"
        ).fetchone()
        if done >= count:
            return (last - started).total_seconds()
        time.sleep(0.05)
    raise TimeoutError(f"only {done} of {count} jobs done")


def throughput(
    base: str, out: Path, jobs: int, concurrency: int, noop: bool, backend: str = "mock"
) -> float:
    """Jobs/s draining a backlog of ``jobs``, from the worker's start (as pgqueuer's run is)."""
    with database(base) as url, psycopg.connect(url, autocommit=True) as conn:
        _insert(conn, jobs, backend=backend)
        kind = NoopWorker if noop else Worker
        worker = kind(
            _config(out, backend), url, WorkerSettings(concurrency=concurrency, poll_s=1.0)
        )
        (started,) = conn.execute("SELECT clock_timestamp()").fetchone()
        with running(worker, settle_s=0):
            elapsed = _drain(conn, jobs, started)
        return jobs / elapsed


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.95) - 1]


def pickup(base: str, out: Path, samples: int) -> tuple[float, float]:
    with database(base) as url, psycopg.connect(url, autocommit=True) as conn:
        worker = NoopWorker(_config(out), url, WorkerSettings(concurrency=1, poll_s=30.0))
        latencies = []
        with running(worker):
            for _ in range(samples):
                before = len(worker.entered)
                sent = time.perf_counter()
                conn.execute("INSERT INTO imagen.jobs (owner, prompt) VALUES ('bench', 'x')")
                while len(worker.entered) == before:
                    time.sleep(0.0002)
                latencies.append((worker.entered[-1] - sent) * 1000)
                time.sleep(0.01)
        return _percentiles(latencies)


async def _pgqueuer_run(queries: Any, stop_after: int, entered: list[float]) -> None:
    """One pgqueuer QueueManager with a no-op entrypoint, 8 jobs at a time, until ``stop_after``."""
    from pgqueuer import QueueManager

    manager = QueueManager(queries)

    @manager.entrypoint("noop")
    async def noop(job: Any) -> None:
        entered.append(time.perf_counter())
        if len(entered) >= stop_after:
            manager.shutdown.set()

    await manager.run(batch_size=4, max_concurrent_tasks=8)


async def _pgqueuer(url: str, jobs: int, samples: int) -> tuple[float, tuple[float, float]]:
    # pgqueuer's own benchmark runs on asyncpg, its primary driver; so does this one.
    import asyncpg
    from pgqueuer import Queries
    from pgqueuer.db import AsyncpgDriver

    dsn = url if url.startswith("postgresql://") else _as_dsn(url)
    connection = await asyncpg.connect(dsn)
    producer = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        enqueuer = Queries(AsyncpgDriver(producer))
        await queries.install()
        await enqueuer.enqueue(["noop"] * jobs, [None] * jobs, [0] * jobs)
        started = time.perf_counter()
        await _pgqueuer_run(queries, jobs, [])
        rate = jobs / (time.perf_counter() - started)

        entered: list[float] = []
        consumer = asyncio.create_task(_pgqueuer_run(queries, samples, entered))
        await asyncio.sleep(0.3)
        latencies = []
        for _ in range(samples):
            before = len(entered)
            sent = time.perf_counter()
            await enqueuer.enqueue("noop", None)
            while len(entered) == before:
                await asyncio.sleep(0.0002)
            latencies.append((entered[-1] - sent) * 1000)
            await asyncio.sleep(0.01)
        await consumer
        return rate, _percentiles(latencies)
    finally:
        await producer.close()
        await connection.close()


def _as_dsn(conninfo: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(conninfo)
    return (
        f"postgresql://{parts.get('user', 'postgres')}@/{parts.get('dbname', 'postgres')}"
        f"?host={parts.get('host', '/tmp')}"
    )


def pgqueuer(base: str, jobs: int, samples: int) -> tuple[float, tuple[float, float]] | None:
    try:
        import pgqueuer  # noqa: F401
    except ImportError:
        return None
    with database(base) as url:
        return asyncio.run(_pgqueuer(url, jobs, samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    get_plugin_manager().register(_Plugin(), name="bench-sleeper")
    reset()
    with server() as base, tempfile.TemporaryDirectory() as out_dir:
        out = Path(out_dir)
        # Median of three for both queues, each on a fresh database, after a warm-up.
        throughput(base, out, 200, 8, noop=True)
        overhead = statistics.median(
            throughput(base, out, args.jobs, 8, noop=True) for _ in range(3)
        )
        pipeline = throughput(base, out / "p", args.jobs // 4, 4, noop=False)
        p50, p95 = pickup(base, out, 200)
        runs = [pgqueuer(base, args.jobs, 200) for _ in range(3)]
        theirs = None
        if runs[0] is not None:
            theirs = (statistics.median(run[0] for run in runs), runs[-1][1])
        scaling = {
            c: throughput(base, out / f"s{c}", c * 4, c, noop=False, backend="sleeper")
            for c in (1, 4, 16)
        }
    print(f"queue overhead (no-op jobs, concurrency 8): {overhead:8.0f} jobs/s")
    if theirs is not None:
        print(f"  pgqueuer, same server, same run:          {theirs[0]:8.0f} jobs/s")
    print(f"full pipeline (mock 16x16, concurrency 4):  {pipeline:8.1f} jobs/s")
    print(f"pickup latency via NOTIFY:                  p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    if theirs is not None:
        print(
            f"  pgqueuer, same server, same run:          p50 {theirs[1][0]:.1f} ms, "
            f"p95 {theirs[1][1]:.1f} ms"
        )
    else:
        print("  (pgqueuer not installed: run `hatch run bench:worker` to compare)")
    for concurrency, rate in scaling.items():
        print(f"1 s jobs at concurrency {concurrency:>2}:                {rate:8.2f} jobs/s")


if __name__ == "__main__":
    main()

"""imagen serve benchmark: requests per second under wrk, and generation latency.

    hatch run bench:serve                  # embedded PostgreSQL in a temp dir
    hatch run bench:serve --duration 20 --connections 32 --samples 50

Runs ``imagen serve --with-worker`` as a user would (uvicorn, one process) against a fresh
database, then, in the same run:

- requests/s and latency under wrk (Debian's ``wrk``; the machine's other core runs it) for
  ``GET /v1/jobs/{id}``, an image file download and its thumbnail, beside
  ``GET /openapi.json``: the same server answering from memory, with no auth and no
  database, which is the ceiling of the stack;
- end-to-end latency of ``POST /v1/images/generations`` (built-in backend, 256x256, one
  image, answered as b64_json), p50/p95 over ``--samples`` requests, beside the same
  generation through the CLI (``imagen generate``, a process each, as a user runs it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from postgres import database, server

KEY = "imk_bench-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _imagen() -> list[str]:
    return [sys.executable, "-m", "imagen"]


def _environment(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEN_")}
    env.update(HOME=str(root), XDG_DATA_HOME=str(root / "data"), XDG_CACHE_HOME=str(root / "cache"))
    return env


def _write_config(root: Path) -> None:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    (root / "imagen.yaml").write_text(
        f"output:\n  directory: {root / 'out'}\n  naming: '{{date}}-{{seed}}-{{time}}.{{ext}}'\n"
        f"backends:\n  mock:\n    type: mock\n"
        f'serve:\n  api_keys:\n    "{digest}": bench\n',
        encoding="utf-8",
    )


def _start(root: Path, url: str, port: int) -> subprocess.Popen[bytes]:
    command = [*_imagen(), "serve", "--with-worker", "--port", str(port), "--database-url", url]
    process = subprocess.Popen(
        command,
        cwd=root,
        env=_environment(root),
        stdout=subprocess.DEVNULL,  # uvicorn's access log: still written, to nowhere
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("imagen serve did not start")


def _generate(client: httpx.Client, seed: int) -> dict:
    response = client.post(
        "/v1/images/generations",
        json={"model": "mock", "prompt": f"a lighthouse {seed}", "size": "256x256"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.95) - 1)]


def serve_latency(client: httpx.Client, samples: int) -> tuple[float, float]:
    for seed in range(3):  # warm-up: the pool, the backend, the caches
        _generate(client, seed)
    timings = []
    for seed in range(samples):
        started = time.perf_counter()
        answer = _generate(client, 1000 + seed)
        timings.append((time.perf_counter() - started) * 1000)
        assert len(answer["data"]) == 1
    return _percentiles(timings)


def cli_latency(root: Path, samples: int) -> tuple[float, float]:
    env = {**_environment(root), "IMAGEN_LOAD_PLUGINS": ""}
    timings = []
    for seed in range(samples + 1):
        command = [*_imagen(), "generate", f"a lighthouse {seed}", "--size", "256x256"]
        started = time.perf_counter()
        subprocess.run(command, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
        if seed:  # the first run warms the disk cache
            timings.append((time.perf_counter() - started) * 1000)
    return _percentiles(timings)


def wrk(url: str, duration: int, connections: int, auth: bool) -> tuple[float, str, str]:
    """Requests/s, median and p99 latency, from wrk's own report."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if auth:
        command[1:1] = ["-H", f"Authorization: Bearer {KEY}"]
    report = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} failed requests on {url}:\n{report}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))
    # The latency distribution's own lines, not a "+/- Stdev" column that ends in "50%".
    p50 = re.search(r"^\s+50%\s+(\S+)$", report, re.MULTILINE).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)$", report, re.MULTILINE).group(1)
    return rate, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk's open connections")
    parser.add_argument("--samples", type=int, default=40, help="generations timed each way")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/serve.py needs wrk: apt-get install wrk")
    with server() as base, database(base) as url, tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        _write_config(root)
        port = _free_port()
        process = _start(root, url, port)
        try:
            headers = {"Authorization": f"Bearer {KEY}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
                serve = serve_latency(client, args.samples)
                facts = _generate(client, 99)["imagen"]
            cli = cli_latency(root, args.samples)
            base_url = f"http://127.0.0.1:{port}"
            image = facts["images"][0]
            targets = {
                "GET /openapi.json (reference)": (f"{base_url}/openapi.json", False),
                "GET /v1/jobs/{id}": (f"{base_url}/v1/jobs/{facts['job']}", True),
                "GET /v1/images/{id}/file": (f"{base_url}/v1/images/{image}/file", True),
                "GET /v1/images/{id}/thumbnail": (f"{base_url}/v1/images/{image}/thumbnail", True),
            }
            loads = {
                name: wrk(target, args.duration, args.connections, auth)
                for name, (target, auth) in targets.items()
            }
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    print(f"wrk, {args.connections} connections, {args.duration} s each (one uvicorn process):")
    for name, (rate, p50, p99) in loads.items():
        print(f"  {name:<32} {rate:8.0f} req/s   p50 {p50:>8}   p99 {p99:>8}")
    print(f"generation, mock 256x256, {args.samples} samples each:")
    print(f"  POST /v1/images/generations      p50 {serve[0]:6.1f} ms   p95 {serve[1]:6.1f} ms")
    print(f"  imagen generate (a process each) p50 {cli[0]:6.1f} ms   p95 {cli[1]:6.1f} ms")


if __name__ == "__main__":
    main()

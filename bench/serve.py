"""imagen serve benchmark: requests per second under wrk, and generation latency.

    hatch run bench:serve                  # embedded PostgreSQL in a temp dir
    hatch run bench:serve --duration 20 --connections 32 --samples 50

Runs ``imagen serve --with-worker -c 4`` as a user would (uvicorn, one process) against a
fresh database, then, in the same run:

- requests/s and latency under wrk (Debian's ``wrk``; the machine's other core runs it) for
  ``GET /v1/jobs/{id}``, an image file download and its thumbnail, beside
  ``GET /openapi.json``: the same server answering from memory, with no auth and no
  database, which is the ceiling of the stack;
- end-to-end latency of ``POST /v1/images/generations`` (built-in backend, 256x256, one
  image, answered as b64_json), p50/p95 over ``--samples`` requests, beside the same
  generation through the CLI (``imagen generate``, a process each, as a user runs it);
- ``POST /v1/images/generations`` through the imagen-openai backend in front of a fast
  OpenAI-compatible upstream (``bench/images_upstream.py``, answering at once), beside
  LiteLLM's proxy in front of the same upstream: p50 at one connection, and requests/s
  under wrk at ``--connections``. LiteLLM is installed in the bench environment only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from postgres import database, server

KEY = "imk_bench-key"
UPSTREAM_KEY = "sk-bench-upstream-key"
LITELLM_KEY = "sk-" + secrets.token_hex(32)  # its proxy refuses to start with a weak one
MODEL = "gpt-image-1.5"
BENCH = Path(__file__).resolve().parent


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


def _write_config(root: Path, upstream: str) -> None:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    (root / "imagen.yaml").write_text(
        f"output:\n  directory: {root / 'out'}\n  naming: '{{date}}-{{seed}}-{{time}}.{{ext}}'\n"
        f"backends:\n  mock:\n    type: mock\n"
        f"  gpt:\n    type: openai\n    model: {MODEL}\n    base_url: {upstream}/v1\n"
        f"    api_key_env: BENCH_UPSTREAM_KEY\n"
        f'serve:\n  api_keys:\n    "{digest}": bench\n',
        encoding="utf-8",
    )


def _wait_for(url: str, what: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode} before it answered")
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{what} did not start in {seconds:g} s")


@contextmanager
def _running(command: list[str], what: str, ready: str, **kwargs) -> Iterator[None]:
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,  # access logs: still written, to nowhere
        stderr=subprocess.DEVNULL,
        **kwargs,
    )
    try:
        _wait_for(ready, what, process, 120)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


def _serve(root: Path, url: str, port: int):
    command = [*_imagen(), "serve", "--with-worker", "-c", "4", "--port", str(port)]
    command += ["--database-url", url]
    env = {**_environment(root), "BENCH_UPSTREAM_KEY": UPSTREAM_KEY}
    return _running(
        command, "imagen serve", f"http://127.0.0.1:{port}/openapi.json", cwd=root, env=env
    )


def _upstream(port: int):
    command = [sys.executable, str(BENCH / "images_upstream.py"), str(port)]
    return _running(command, "the upstream", f"http://127.0.0.1:{port}/health")


def _litellm(root: Path, upstream: str, port: int):
    """LiteLLM's proxy, one worker, in front of ``upstream``, with no database."""
    litellm = shutil.which("litellm", path=str(Path(sys.executable).parent))
    if litellm is None:
        raise SystemExit("bench/serve.py needs LiteLLM's proxy: run it as hatch run bench:serve")
    config = root / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream}/v1\n"
        f"      api_key: {UPSTREAM_KEY}\n"
        "litellm_settings:\n  drop_params: true\n  telemetry: false\n"
        f"general_settings:\n  master_key: {LITELLM_KEY}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    command = [litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--num_workers", "1"]
    return _running(
        command, "LiteLLM", f"http://127.0.0.1:{port}/health/liveliness", cwd=root, env=env
    )


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


def post_latency(url: str, body: dict, headers: dict[str, str], samples: int) -> float:
    """p50 in ms of ``samples`` POSTs one after another on one connection."""
    with httpx.Client(headers=headers, timeout=60) as client:
        for _ in range(3):  # warm-up: pools, caches, the backend instance
            client.post(url, json=body).raise_for_status()
        timings = []
        for _ in range(samples):
            started = time.perf_counter()
            response = client.post(url, json=body)
            timings.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            assert response.json()["data"][0]["b64_json"]
    return statistics.median(timings)


def wrk(
    url: str,
    duration: int,
    connections: int,
    auth: bool,
    post: dict | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[float, str, str]:
    """Requests/s, median and p99 latency, from wrk's own report (``post``: a JSON body)."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if auth:
        command[1:1] = ["-H", f"Authorization: Bearer {KEY}"]
    for name, value in (headers or {}).items():
        command[1:1] = ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if post is not None:
            script.write(
                f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(post))}\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
            )
            script.flush()
            command[1:1] = ["-s", script.name]
        report = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", report) or re.search(
        r"Socket errors: .*timeout (\d+)", report
    )
    if errors and errors.group(1) == "0":
        errors = None
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} failed requests on {url}:\n{report}")
    if "Latency Distribution" not in report:
        raise SystemExit(f"wrk gave no latency distribution for {url}:\n{report}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))
    # The latency distribution's own lines, not a "+/- Stdev" column that ends in "50%".
    p50 = re.search(r"^\s+50%\s+(\S+)\s*$", report, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)\s*$", report, re.MULTILINE)
    if p50 is None or p99 is None:
        raise SystemExit(f"cannot read wrk's latency distribution for {url}:\n{report}")
    p50, p99 = p50.group(1), p99.group(1)
    return rate, p50, p99


def beside_litellm(root: Path, serve_url: str, upstream: str, args) -> dict[str, tuple]:
    """p50 at one connection and requests/s at ``--connections``, through each proxy."""
    body = {"prompt": "a lighthouse at dusk", "size": "1024x1024", "n": 1}
    port = _free_port()
    results = {}
    with _litellm(root, upstream, port):
        litellm_url = f"http://127.0.0.1:{port}/v1/images/generations"
        reference = {**body, "model": MODEL}
        auth = {"Authorization": f"Bearer {LITELLM_KEY}"}
        results["LiteLLM proxy (reference)"] = (
            post_latency(litellm_url, reference, auth, args.samples),
            wrk(litellm_url, args.duration, args.connections, False, reference, auth)[0],
        )
    imagen = {**body, "model": "gpt"}
    url = f"{serve_url}/v1/images/generations"
    headers = {"Authorization": f"Bearer {KEY}"}
    results["imagen serve --with-worker -c 4"] = (
        post_latency(url, imagen, headers, args.samples),
        wrk(url, args.duration, args.connections, True, imagen)[0],
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk's open connections")
    parser.add_argument("--samples", type=int, default=40, help="generations timed each way")
    parser.add_argument(
        "--proxies-only", action="store_true", help="only the comparison with LiteLLM's proxy"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/serve.py needs wrk: apt-get install wrk")
    loads: dict[str, tuple] = {}
    with server() as base, database(base) as url, tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        upstream_port, port = _free_port(), _free_port()
        upstream = f"http://127.0.0.1:{upstream_port}"
        _write_config(root, upstream)
        base_url = f"http://127.0.0.1:{port}"
        with _upstream(upstream_port), _serve(root, url, port):
            if not args.proxies_only:
                headers = {"Authorization": f"Bearer {KEY}"}
                with httpx.Client(base_url=base_url, headers=headers) as client:
                    serve = serve_latency(client, args.samples)
                    facts = _generate(client, 99)["imagen"]
                cli = cli_latency(root, args.samples)
                image = facts["images"][0]
                targets = {
                    "GET /openapi.json (reference)": (f"{base_url}/openapi.json", False),
                    "GET /v1/jobs/{id}": (f"{base_url}/v1/jobs/{facts['job']}", True),
                    "GET /v1/images/{id}/file": (f"{base_url}/v1/images/{image}/file", True),
                    "GET /v1/images/{id}/thumbnail": (
                        f"{base_url}/v1/images/{image}/thumbnail",
                        True,
                    ),
                }
                loads = {
                    name: wrk(target, args.duration, args.connections, auth)
                    for name, (target, auth) in targets.items()
                }
            proxies = beside_litellm(root, base_url, upstream, args)
    if loads:
        print(f"wrk, {args.connections} connections, {args.duration} s each (one uvicorn process):")
        for name, (rate, p50, p99) in loads.items():
            print(f"  {name:<32} {rate:8.0f} req/s   p50 {p50:>8}   p99 {p99:>8}")
        print(f"generation, mock 256x256, {args.samples} samples each:")
        print(f"  POST /v1/images/generations      p50 {serve[0]:6.1f} ms   p95 {serve[1]:6.1f} ms")
        print(f"  imagen generate (a process each) p50 {cli[0]:6.1f} ms   p95 {cli[1]:6.1f} ms")
    print(
        f"POST /v1/images/generations in front of one fast OpenAI-compatible upstream "
        f"({MODEL}, 1 image; p50 over {args.samples} at 1 connection, wrk {args.duration} s "
        f"at {args.connections}):"
    )
    reference = proxies["LiteLLM proxy (reference)"]
    for name, (p50, rate) in proxies.items():
        print(
            f"  {name:<32} p50 {p50:6.1f} ms ({p50 / reference[0]:4.1f}x)   "
            f"{rate:6.1f} req/s ({rate / reference[1]:4.2f}x)"
        )


if __name__ == "__main__":
    main()

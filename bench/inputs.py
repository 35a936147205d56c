"""Input images: peak memory for a 50 MB input, and an edit's latency beside a generation's.

    hatch run python bench/inputs.py              # embedded PostgreSQL in a temp dir
    hatch run python bench/inputs.py --samples 40

In one run, on the built-in backend:

- peak memory (the kernel's high-water mark of resident memory, VmHWM) of
  ``imagen generate --image`` with a 48 MB PNG (noise: it does not compress, 4096x4096)
  beside the same command with a 1 MB input and with none: what the input itself costs;
- peak memory of ``imagen serve`` (its own process, no worker in it) before and after
  receiving that 48 MB file through ``POST /v1/images/edits``, and of the separate
  ``imagen worker`` that edits it: the server spools uploads to disk, so its peak should
  not grow by the file's size;
- end-to-end latency of ``POST /v1/images/edits`` (a 256x256 PNG, one image, b64_json)
  beside ``POST /v1/images/generations`` of the same size, interleaved, p50/p95.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from postgres import database, server
from serve import _environment, _free_port, _imagen, _percentiles, _running

KEY = "imk_bench-inputs-key"


def _noise_png(path: Path, side: int) -> None:
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(
        path, "PNG", compress_level=1
    )


def _config(root: Path) -> None:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    (root / "imagen.yaml").write_text(
        f"output:\n  directory: {root / 'out'}\n  naming: '{{date}}-{{seed}}-{{time}}.{{ext}}'\n"
        "backends:\n  mock:\n    type: mock\n"
        f'serve:\n  inputs_dir: {root / "inputs"}\n  api_keys:\n    "{digest}": bench\n',
        encoding="utf-8",
    )


def _cli_peak_mb(root: Path, extra: list[str]) -> float:
    """Peak resident memory of one ``imagen generate`` process, in MB."""
    env = {**_environment(root), "IMAGEN_LOAD_PLUGINS": ""}
    command = [*_imagen(), "generate", "a lighthouse", "--size", "512x512", *extra]
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL)
    # Polled: ru_maxrss would count the memory of this process, which the child starts as
    # a copy of before it execs.
    peak = 0.0
    while process.poll() is None:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, SystemExit):
            peak = max(peak, _peak_mb(process.pid))
        time.sleep(0.002)
    if process.returncode != 0:
        raise SystemExit(f"imagen generate {' '.join(extra)} exited {process.returncode}")
    return peak


def _peak_mb(pid: int) -> float:
    """A running process's high-water mark of resident memory, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc: Linux only")


def _pid_listening(port: int) -> int:
    import psutil

    for connection in psutil.net_connections("tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == "LISTEN":
            return connection.pid
    raise SystemExit(f"nothing listens on port {port}")


def _workers_pid(root: Path) -> int:
    import psutil

    for process in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = process.info["cmdline"] or []
        if "worker" in cmdline and process.info["cwd"] == str(root):
            return process.pid
    raise SystemExit("the worker is not running")


def _edit(client: httpx.Client, data: bytes, size: str) -> dict:
    response = client.post(
        "/v1/images/edits",
        files={"image": ("input.png", data, "image/png")},
        data={"model": "mock", "prompt": "a lighthouse", "size": size},
        timeout=300,
    )
    response.raise_for_status()
    return response.json()


def _generate(client: httpx.Client) -> dict:
    response = client.post(
        "/v1/images/generations",
        json={"model": "mock", "prompt": "a lighthouse", "size": "256x256"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imagen-bench-inputs-") as temp:
        root = Path(temp)
        _config(root)
        big, small = root / "big.png", root / "small.png"
        _noise_png(big, 4096)
        _noise_png(small, 580)
        print(f"input: {big.stat().st_size / 2**20:.1f} MB PNG (4096x4096 noise)")

        none = _cli_peak_mb(root, [])
        one = _cli_peak_mb(root, ["--image", str(small)])
        fifty = _cli_peak_mb(root, ["--image", str(big)])
        print("imagen generate, peak RSS:")
        print(f"  no input          {none:7.1f} MB")
        print(f"  1 MB input        {one:7.1f} MB")
        print(f"  48 MB input       {fifty:7.1f} MB  (the decoded 4096x4096 image is 48 MB)")

        buffer = io.BytesIO()
        Image.frombytes("RGB", (256, 256), os.urandom(256 * 256 * 3)).save(buffer, "PNG")
        tile = buffer.getvalue()
        with server() as pg, database(pg) as url:
            port = _free_port()
            env = _environment(root)
            serve = [*_imagen(), "serve", "--port", str(port), "--database-url", url]
            worker = [*_imagen(), "worker", "-c", "1", "--database-url", url]
            ready = f"http://127.0.0.1:{port}/openapi.json"
            with (
                _running(serve, "imagen serve", ready, cwd=root, env=env),
                _running(worker, "imagen worker", ready, cwd=root, env=env),
            ):
                headers = {"Authorization": f"Bearer {KEY}"}
                base = f"http://127.0.0.1:{port}"
                with httpx.Client(base_url=base, headers=headers) as client:
                    time.sleep(1)  # the worker's first claim
                    _edit(client, tile, "256x256")  # warm-up: pools, caches, the backend
                    _generate(client)
                    serve_pid, worker_pid = _pid_listening(port), _workers_pid(root)
                    serve_before, worker_before = _peak_mb(serve_pid), _peak_mb(worker_pid)
                    _edit(client, big.read_bytes(), "512x512")
                    serve_after, worker_after = _peak_mb(serve_pid), _peak_mb(worker_pid)
                    print("POST /v1/images/edits with the 48 MB input, peak RSS:")
                    print(f"  imagen serve      {serve_before:7.1f} MB before, "
                          f"{serve_after:7.1f} MB after")  # fmt: skip
                    print(f"  imagen worker     {worker_before:7.1f} MB before, "
                          f"{worker_after:7.1f} MB after")  # fmt: skip

                    edits, generations = [], []
                    for _ in range(args.samples):
                        started = time.perf_counter()
                        _edit(client, tile, "256x256")
                        edits.append((time.perf_counter() - started) * 1000)
                        started = time.perf_counter()
                        _generate(client)
                        generations.append((time.perf_counter() - started) * 1000)
        print(f"end to end through imagen serve + worker, 256x256, {args.samples} each:")
        for name, samples in (("generation", generations), ("edit", edits)):
            p50, p95 = _percentiles(samples)
            print(f"  {name:<17} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms")


if __name__ == "__main__":
    main()

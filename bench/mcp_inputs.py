"""Input images through `imagen mcp`: the server's peak memory and the call's time.

Run from the workspace root with the dev environment:

    hatch run python bench/mcp_inputs.py            # 3 runs each (default)
    hatch run python bench/mcp_inputs.py --runs 5 --mb 15

Each run starts a fresh `imagen mcp` over stdio (the mcp SDK's own client) on the built-in
backend and makes one call: `generate_image` with no input (the reference), `edit_image`
with a PNG of about ``--mb`` MB sent as base64 `data`, and the same file named by `path`
under `mcp.input_roots`; then `submit_job` with the same input both ways, which copies it
into the inputs directory for the workers and queues the job (on a fresh database of
``$IMAGEN_BENCH_DATABASE_URL``, else an embedded PostgreSQL: see bench/postgres.py). The
server reports its own peak RSS (``VmHWM``) as it exits;
the time is the call's, from request to result. The input is a picture of random pixels
(PNG cannot compress it), as large as it takes to weigh about ``--mb`` MB: a large photo.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from PIL import Image
from postgres import database, server

# VmHWM is the server's own peak: ru_maxrss would also count this process's memory (the
# input and its base64 among it) as it stood when the server was started.
SERVER = (
    "import atexit, re, runpy, sys\n"
    "def peak():\n"
    "    status = open('/proc/self/status').read()\n"
    "    print('peak_rss_kb', re.search(r'VmHWM:\\s+(\\d+)', status)[1], file=sys.stderr, flush=True)\n"
    "atexit.register(peak)\n"
    "sys.argv = ['imagen', 'mcp']\n"
    "runpy.run_module('imagen', run_name='__main__')\n"
)


def noise_png(megabytes: float) -> bytes:
    side = int((megabytes * 2**20 / 3) ** 0.5)
    noise = random.Random(1).randbytes(side * side * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), noise).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


async def one_call(env: dict[str, str], cwd: Path, tool: str, arguments: dict) -> float:
    params = StdioServerParameters(
        command=sys.executable, args=["-c", SERVER], env=env, cwd=str(cwd)
    )
    with open(cwd / "stderr.txt", "a") as errlog:  # noqa: ASYNC230
        async with Client(stdio_client(params, errlog=errlog)) as client:
            started = time.perf_counter()
            result = await client.call_tool(tool, arguments)
            took = time.perf_counter() - started
    assert result.is_error is False, result.content
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=float, default=15.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, server() as base, database(base) as url:
        root = Path(tmp)
        inputs = root / "inputs"
        inputs.mkdir()
        data = noise_png(args.mb)
        (inputs / "photo.png").write_bytes(data)
        encoded = base64.b64encode(data).decode()
        (root / "imagen.yaml").write_text(
            "backends:\n  mock: {type: mock}\n"
            f"mcp:\n  input_roots: ['{inputs}']\n  input_max_bytes: 50000000\n"
            f"worker:\n  database_url: {url!r}\n"
            f"serve:\n  inputs_dir: '{root / 'kept'}'\n"
        )
        env = {
            **os.environ,
            "HOME": str(root),
            "XDG_CONFIG_HOME": str(root / ".config"),
            "XDG_DATA_HOME": str(root / ".data"),
            "IMAGEN_LOAD_PLUGINS": "mcp,worker",
        }
        size = f"{len(data) / 2**20:.1f} MB"
        by_data = {"data": encoded}
        by_path = {"path": str(inputs / "photo.png")}
        cases = {
            "generate_image, no input": ("generate_image", {"prompt": "p", "size": "512x512"}),
            f"edit_image, {size} as base64 data": ("edit_image", {"prompt": "p", "image": by_data}),
            f"edit_image, {size} by path": ("edit_image", {"prompt": "p", "image": by_path}),
            "submit_job, no input": ("submit_job", {"prompt": "p", "size": "512x512"}),
            f"submit_job, {size} as base64 data": (
                "submit_job",
                {"prompt": "p", "inputs": [by_data]},
            ),
            f"submit_job, {size} by path": ("submit_job", {"prompt": "p", "inputs": [by_path]}),
        }
        results: dict[str, list[tuple[float, int]]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, (tool, arguments) in cases.items():  # interleaved: noise hits all alike
                log = root / "stderr.txt"
                log.write_text("")
                took = anyio.run(one_call, env, root, tool, arguments)
                peak = [
                    int(line.split()[1])
                    for line in log.read_text().splitlines()
                    if line.startswith("peak_rss_kb")
                ]
                results[name].append((took, peak[-1] if peak else -1))
        print(f"python {sys.version.split()[0]}, {args.runs} runs each, medians")
        for name, rows in results.items():
            took = statistics.median(t for t, _ in rows)
            peak = statistics.median(p for _, p in rows) / 1024
            print(f"  {name:42} call {took * 1000:7.0f} ms   server peak RSS {peak:6.1f} MB")


if __name__ == "__main__":
    main()

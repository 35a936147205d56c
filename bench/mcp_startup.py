"""MCP start-up benchmark: process start to the first tool result, beside `imagen generate`.

Run from the workspace root with the dev environment:

    hatch run python bench/mcp_startup.py              # 15 runs each (default)
    hatch run python bench/mcp_startup.py --runs 30 --json results.json

Each run starts a fresh `imagen mcp` process and times, with the mcp SDK's own client, from
the spawn to the result of the first tool call: `list_backends` (the cheapest first call a
client makes) and `generate_image` of one 512x512 image on the built-in offline backend,
over stdio in both protocol eras (`legacy`: the initialize handshake; `auto`: 2026-07-28)
and over streamable HTTP (spawn, bind, connect, call). The reference is the same image
made by `imagen generate` in a fresh process, and the smallest server the SDK makes (one
tool that answers "pong", over stdio): the first is what the work costs without MCP, the
second what the SDK alone costs a client before its first result. All run interleaved in
the same loop, so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from imagen.tokens import hash_key

KEY = "imk_benchmark_key_0123456789"
MINIMAL_SERVER = """
from mcp.server.mcpserver import MCPServer

server = MCPServer("minimal")


@server.tool()
def ping() -> str:
    return "pong"


server.run("stdio")
"""
GENERATE = {"prompt": "benchmark lighthouse", "seed": 7, "size": "512x512"}


def _imagen() -> str:
    script = Path(sys.executable).with_name("imagen")
    return str(script) if script.exists() else shutil.which("imagen") or "imagen"


def _stdio(
    env: dict[str, str],
    cwd: str,
    mode: str,
    tool: str,
    args: dict,
    command: list[str] | None = None,
) -> float:
    command = command or [_imagen(), "mcp"]

    async def run() -> float:
        started = time.perf_counter()
        params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=cwd)
        with open(os.devnull, "w") as errlog:  # noqa: ASYNC230 (before the clock matters)
            async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
                result = await client.call_tool(tool, args)
                elapsed = time.perf_counter() - started
        assert not result.is_error, result.content
        return elapsed * 1000

    return anyio.run(run)


def _http(env: dict[str, str], cwd: str, tool: str, args: dict) -> float:
    started = time.perf_counter()
    process = subprocess.Popen(
        [_imagen(), "mcp", "--http", "--port", "0"],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = next(
            line.split("imagen mcp: ", 1)[1].split()[0]
            for line in process.stderr
            if "imagen mcp: http://" in line
        )

        async def run() -> float:
            headers = {"Authorization": f"Bearer {KEY}"}
            async with (
                create_mcp_http_client(headers=headers) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                result = await client.call_tool(tool, args)
                elapsed = time.perf_counter() - started
            assert not result.is_error, result.content
            return elapsed * 1000

        return anyio.run(run)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate()


def _cli(env: dict[str, str], cwd: str, out: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [_imagen(), "generate", GENERATE["prompt"], "--seed", "7", "--size", "512x512", "-o", out],
        env=env,
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEN_")}
        env.update(
            HOME=tmp,
            XDG_CONFIG_HOME=os.path.join(tmp, ".config"),
            XDG_DATA_HOME=os.path.join(tmp, ".local", "share"),
            IMAGEN_LOAD_PLUGINS="mcp",
        )
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        Path(tmp, "imagen.yaml").write_text(
            f'serve:\n  api_keys:\n    "{hash_key(KEY)}": bench\nmcp:\n  max_session_images: 0\n'
        )
        out = os.path.join(tmp, "out")
        cases: dict[str, Callable[[], float]] = {
            "imagen generate 512x512 (reference)": lambda: _cli(env, tmp, out),
            "minimal SDK server: ping (reference)": lambda: _stdio(
                env, tmp, "auto", "ping", {}, [sys.executable, "-c", MINIMAL_SERVER]
            ),
            "stdio legacy: list_backends": lambda: _stdio(env, tmp, "legacy", "list_backends", {}),
            "stdio auto: list_backends": lambda: _stdio(env, tmp, "auto", "list_backends", {}),
            "stdio legacy: generate_image 512x512": lambda: _stdio(
                env, tmp, "legacy", "generate_image", GENERATE
            ),
            "stdio auto: generate_image 512x512": lambda: _stdio(
                env, tmp, "auto", "generate_image", GENERATE
            ),
            "http: generate_image 512x512": lambda: _http(env, tmp, "generate_image", GENERATE),
        }
        for case in cases.values():  # warm the OS file cache and the bytecode once
            case()
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, case in cases.items():
                samples[name].append(case())

    results = {
        name: {
            "median_ms": round(statistics.median(values), 1),
            "p90_ms": round(statistics.quantiles(values, n=10)[-1], 1),
            "min_ms": round(min(values), 1),
        }
        for name, values in samples.items()
    }
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, {args.runs} runs each, process start to first tool result"
    )
    print(f"{'case':<40}{'median':>10}{'p90':>10}{'min':>10}")
    for name, row in results.items():
        print(f"{name:<40}{row['median_ms']:>8.1f}ms{row['p90_ms']:>8.1f}ms{row['min_ms']:>8.1f}ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

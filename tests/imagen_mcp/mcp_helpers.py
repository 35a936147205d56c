"""Helpers that drive a real ``imagen mcp`` process with the mcp SDK's client."""

from __future__ import annotations

import base64
import io
import random
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from PIL import Image

from imagen.tokens import hash_key

ALICE_KEY = "imk_alice_test_key_0123456789"
BOB_KEY = "imk_bob_test_key_0123456789"


def stderr_of(home) -> str:
    path = home.root / "server-stderr.txt"
    return path.read_text() if path.exists() else ""


@asynccontextmanager
async def stdio(home, *args: str, mode: str = "auto") -> AsyncIterator[Client]:
    """A client connected to ``imagen mcp ARGS`` over its stdin and stdout."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "imagen", *args, "mcp"],
        env=home.env,
        cwd=str(home.cwd),
    )
    stderr = home.root / "server-stderr.txt"
    with open(stderr, "a", encoding="utf-8") as errlog:  # noqa: ASYNC230 (a local file, once)
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            yield client


@dataclass
class HttpServer:
    """A running ``imagen mcp --http`` process."""

    url: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @asynccontextmanager
    async def client(
        self, token: str | None = ALICE_KEY, mode: str = "auto"
    ) -> AsyncIterator[Client]:
        """A client signed in with ``token``; its HTTP client is closed with it."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with create_mcp_http_client(headers=headers) as http:
            transport = streamable_http_client(self.url, http_client=http)
            async with Client(transport, mode=mode) as client:
                yield client


@contextmanager
def http_server(home, *args: str) -> Iterator[HttpServer]:
    """``imagen mcp --http --port 0 ARGS``, until the block ends; then SIGTERM, exit 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "imagen", "mcp", "--http", "--port", "0", *args],
        cwd=home.cwd,
        env=home.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    url = None
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line)
        if "imagen mcp: http://" in line:
            url = line.split("imagen mcp: ", 1)[1].split()[0]
            break
    if url is None:
        process.wait()
        raise AssertionError("imagen mcp --http did not start:\n" + "".join(lines))
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    server = HttpServer(url, process, lines)
    try:
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait()
        reader.join()
        process.stdout.close()
        process.stderr.close()
        assert code == 0, "".join(lines)
        assert "Traceback" not in "".join(lines), "".join(lines)


def serve_keys_config(extra: str = "") -> str:
    return f"""
        serve:
          api_keys:
            "{hash_key(ALICE_KEY)}": alice
            "{hash_key(BOB_KEY)}": bob
        {extra}
    """


def decoded(content: Any) -> Image.Image:
    """The picture an MCP image content block carries."""
    assert content.type == "image"
    picture = Image.open(io.BytesIO(base64.b64decode(content.data)))
    picture.load()
    return picture


def usage_statuses(home) -> list[str]:
    import sqlite3

    path = Path(home.env["XDG_DATA_HOME"]) / "imagen" / "usage.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        try:
            return [row[0] for row in conn.execute("SELECT status FROM usage ORDER BY id")]
        except sqlite3.OperationalError:  # created, but its table not yet
            return []


def pictures(home) -> list[Path]:
    return sorted(p for p in home.pictures.rglob("*") if p.suffix in (".png", ".jpeg", ".webp"))


__all__ = [
    "ALICE_KEY",
    "BOB_KEY",
    "HttpServer",
    "decoded",
    "http_server",
    "pictures",
    "serve_keys_config",
    "stderr_of",
    "stdio",
    "usage_statuses",
]


def noise_png(size=(64, 48), seed=1) -> bytes:
    data = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, data).save(buffer, "PNG")
    return buffer.getvalue()


def half_mask(size=(64, 48)) -> bytes:
    """White (repaint) on the left half, black (keep) on the right."""
    picture = Image.new("L", size, 0)
    picture.paste(255, (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def picture_of(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.convert("RGB")

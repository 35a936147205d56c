"""Peak memory of an OpenAI edit with a 50 MB input, beside reading the input into bytes.

    python bench/openai_edit_memory.py [--json]

Makes a PNG of noise just under OpenAI's 50 MB limit, starts the loopback OpenAI stand-in
(tests/imagen_openai/openai_standin.py) in a process of its own, so that its copy of the
upload is not counted, and measures with tracemalloc, in this process:

- ``adapter``: ``load_input`` (checks and hashes the file) and the imagen-openai backend's
  edit through the openai SDK, which streams the file from disk;
- ``bytes``: the reference, the same SDK call with the file read into ``bytes`` first, as
  an adapter that did not stream would send it;
- ``generate``: a generation with no input, the adapter's own floor.

Each is run after a warm-up call, so imports and connection set-up are not counted. The
numbers are Python allocations (tracemalloc), not the process's resident size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "imagen_openai"
KEY = "sk-loopback-test-key-0123456789"
_SERVE = """
import sys
sys.path.insert(0, sys.argv[1])
from openai_standin import OpenAIStandIn
with OpenAIStandIn() as server:
    print(server.api, flush=True)
    sys.stdin.read()
"""


def _noise_png(path: Path, limit: int = 50_000_000) -> int:
    """A PNG of random pixels (it does not compress) just under ``limit`` bytes."""
    from PIL import Image

    side = 4000
    height = (limit - 200_000) // (side * 3)
    Image.frombytes("RGB", (side, height), os.urandom(side * height * 3)).save(
        path, "PNG", compress_level=1
    )
    size = path.stat().st_size
    if size >= limit:
        raise SystemExit(f"the noise PNG came out at {size} bytes, not under {limit}")
    return size


def _peak(action: Callable[[], Any]) -> tuple[int, float]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    started = time.perf_counter()
    try:
        action()
        return tracemalloc.get_traced_memory()[1], time.perf_counter() - started
    finally:
        tracemalloc.stop()


def measure(directory: Path) -> dict[str, Any]:
    import openai

    from imagen import BackendConfig, Context, Request
    from imagen.inputs import load_input
    from imagen_openai.backend import OpenAIBackend

    photo = directory / "photo.png"
    size = _noise_png(photo)
    child = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(STANDIN)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        api = child.stdout.readline().strip()
        config = BackendConfig(
            "gpt", "openai", {"base_url": api, "model": "gpt-image-1-mini", "quality": "low"},
            environ={"OPENAI_API_KEY": KEY},
        )  # fmt: skip
        backend = OpenAIBackend(config)
        client = openai.OpenAI(api_key=KEY, base_url=api, max_retries=0)

        def adapter() -> None:
            image = load_input(photo, "image")
            result = backend.generate(Request("a hat", inputs=(image,)), Context())
            assert len(result.images) == 1

        def in_bytes() -> None:
            data = photo.read_bytes()
            client.images.edit(
                model="gpt-image-1-mini", prompt="a hat",
                image=[("photo.png", data, "image/png")],
            )  # fmt: skip

        def generate() -> None:
            backend.generate(Request("a hat"), Context())

        results: dict[str, Any] = {"input_bytes": size}
        for name, action in (("generate", generate), ("adapter", adapter), ("bytes", in_bytes)):
            action()  # warm-up: imports, the connection
            peak, seconds = _peak(action)
            results[name] = {"peak_bytes": peak, "seconds": round(seconds, 3)}
        backend.close()
        client.close()
        return results
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        results = measure(Path(directory))
    if arguments.json:
        print(json.dumps(results))
        return
    mb = 1024 * 1024
    print(f"input: {results['input_bytes'] / 1e6:.1f} MB PNG")
    for name, label in (
        ("generate", "generation, no input (floor)"),
        ("adapter", "imagen-openai edit (streamed)"),
        ("bytes", "SDK edit from bytes (reference)"),
    ):
        entry = results[name]
        print(f"{label:34} peak {entry['peak_bytes'] / mb:7.1f} MiB  {entry['seconds']:.2f} s")


if __name__ == "__main__":
    main()

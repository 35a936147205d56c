"""Peak memory of sending a 50 MB input image to Replicate, beside the SDK's own ways.

    hatch run python bench/replicate_inputs_memory.py [--mb 50]

A PNG of about ``--mb`` MB (noise, so it does not compress) is made in a temporary
directory. The loopback Replicate of the tests (tests/imagen_replicate/replicate_standin.py)
runs in this process; every case runs in a fresh child process, which reports its own peaks
(so the stand-in's copy of the upload is never counted; Linux only, for ``VmHWM``):

- `text only`: the reference: imagen's Replicate backend makes one image from a prompt;
- `imagen, url`: the same with the file as ``--image`` to flux-kontext-pro, uploaded to
  ``/v1/files`` (the default, ``file_encoding: url``);
- `imagen, base64`: the same with ``file_encoding: base64`` (a ``data:`` URL in the JSON);
- `sdk files.create`: replicate 1.0.7's own upload of the file (what ``input={"x": f}``
  does by default);
- `sdk base64`: the SDK's ``base64_encode_file`` and the JSON body it becomes (what
  ``file_encoding_strategy="base64"`` does).

Each line is the child's peak of Python allocations (``tracemalloc``: what the code holds)
and of resident memory (which also counts the interpreter, C libraries and the allocator's
unreturned pages), in MB; the median of ``--runs``. The output image of an edit has the
input's size, and is drained in pieces as imagen saves it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "imagen_replicate"))

from replicate_standin import TOKEN, ReplicateStandIn

CHILD = r"""
import json, sys, tracemalloc
tracemalloc.start()
mode, url, path = sys.argv[1:4]
if mode.startswith("imagen"):
    from imagen import BackendConfig, Context, Request
    from imagen.inputs import load_input
    from imagen_replicate.backend import ReplicateBackend
    settings = {"model": "black-forest-labs/flux-kontext-pro", "base_url": url,
                "poll_interval_s": 0.02}
    if mode == "imagen-base64":
        settings["file_encoding"] = "base64"
    backend = ReplicateBackend(BackendConfig("b", "replicate", settings,
                                             environ={"REPLICATE_API_TOKEN": @TOKEN@}))
    inputs = () if mode == "imagen-text" else (load_input(__import__("pathlib").Path(path)),)
    result = backend.generate(Request("x", inputs=inputs), Context())
    for image in result.images:  # drained as imagen saves it: in pieces
        while image.stream.read(1 << 16):
            pass
    backend.close()
else:
    import replicate
    client = replicate.Client(api_token=@TOKEN@, base_url=url)
    if mode == "sdk-url":
        client.files.create(path)
    else:
        from replicate.helpers import base64_encode_file
        with open(path, "rb") as handle:
            body = json.dumps({"input": {"input_image": base64_encode_file(handle)}}).encode()
        client._client.post("/v1/models/black-forest-labs/flux-kontext-pro/predictions",
                            content=body, headers={"Content-Type": "application/json"})
# VmHWM: this process's own peak. ru_maxrss would also count the parent's resident
# memory at the fork (Linux carries it over exec), and the parent holds the stand-in.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(tracemalloc.get_traced_memory()[1] // 1024, hwm.split()[1])
""".replace("@TOKEN@", repr(TOKEN))

CASES = [
    ("text only", "imagen-text"),
    ("imagen, url", "imagen-url"),
    ("imagen, base64", "imagen-base64"),
    ("sdk files.create", "sdk-url"),
    ("sdk base64", "sdk-base64"),
]


def noise_png(path: Path, megabytes: float) -> None:
    from PIL import Image

    side = int((megabytes * 1e6 / 3) ** 0.5)
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(path, compress_level=0)


def peak_kib(mode: str, url: str, path: Path) -> tuple[int, int]:
    """The child's peak of Python allocations (tracemalloc) and of resident memory, KiB."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, url, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr}")
    heap, rss = proc.stdout.split()[-2:]
    return int(heap), int(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="input size in MB (50)")
    parser.add_argument("--runs", type=int, default=3, help="runs per case, median (3)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ReplicateStandIn(TOKEN) as api:
        path = Path(tmp) / "input.png"
        noise_png(path, args.mb)
        size_mb = path.stat().st_size / 1e6
        results = {}
        for label, mode in CASES:
            runs = [peak_kib(mode, api.url, path) for _ in range(args.runs)]
            results[label] = {
                "python_heap_mb": round(statistics.median(r[0] for r in runs) / 1024, 1),
                "rss_mb": round(statistics.median(r[1] for r in runs) / 1024, 1),
            }
    if args.json:
        print(json.dumps({"input_mb": round(size_mb, 1), "peak_mb": results}, indent=2))
        return
    print(f"input: {size_mb:.1f} MB PNG; peaks in MB, median of {args.runs}")
    print(f"  {'case':<18} {'python heap':>12} {'resident':>10}")
    for label, peak in results.items():
        print(f"  {label:<18} {peak['python_heap_mb']:12.1f} {peak['rss_mb']:10.1f}")


if __name__ == "__main__":
    main()

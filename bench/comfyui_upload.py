"""Peak memory of `imagen generate --image` with a 50 MB input through ComfyUI, with references.

Run from the workspace root with the dev environment:

    hatch run python bench/comfyui_upload.py             # 3 runs each (default)
    hatch run python bench/comfyui_upload.py --runs 5 --mb 50

It writes a PNG of random pixels just under imagen's 50 MB input limit, starts the
loopback ComfyUI of the tests (tests/imagen_comfyui/comfy_standin.py) in this process, and
runs each of these in a fresh process, interleaved, reading the process's own peak
resident memory (VmHWM) when it ends:

- `python -c pass + httpx`: the interpreter with httpx imported, the floor;
- `httpx, bytes in memory`: a bare script that reads the file and posts it to
  /upload/image (what streaming avoids);
- `httpx, streamed`: the same, posting the open file (httpx's multipart encoder reads it
  in chunks);
- `imagen generate (text)`: `imagen generate` through the checkpoint template, no input;
- `imagen generate --image`: the img2img template with the 50 MB input: checked (type,
  size, pixels, hash), uploaded, run, the result saved. The stand-in's copy of the input
  is removed before each run, so every run uploads it.

imagen's input costs what is measured beyond `imagen generate (text)`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "imagen_comfyui"))

from comfy_standin import ComfyStandIn

MODEL = "sd_xl_base_1.0.safetensors"
PEAK = (
    "\nimport re\n"
    "status = open('/proc/self/status').read()\n"
    "print('peak_kb', re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1), file=sys.stderr)\n"
)
FLOOR = "import sys, httpx\n" + PEAK
IN_MEMORY = (
    "import sys, httpx\n"
    "data = open(sys.argv[2], 'rb').read()\n"
    "httpx.post(sys.argv[1] + '/upload/image', data={'type': 'input'},\n"
    "           files={'image': ('bytes.png', data, 'image/png')}, timeout=120).raise_for_status()\n"
    + PEAK
)
STREAMED = (
    "import sys, httpx\n"
    "with open(sys.argv[2], 'rb') as file:\n"
    "    httpx.post(sys.argv[1] + '/upload/image', data={'type': 'input'},\n"
    "               files={'image': ('streamed.png', file, 'image/png')}, timeout=120).raise_for_status()\n"
    + PEAK
)
IMAGEN = (
    "import sys\n"
    "from imagen.cli import main\n"
    "sys.argv = ['imagen', *sys.argv[1:]]\n"
    "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
    + PEAK
    + "sys.exit(code)\n"
)


def _noise_png(path: Path, megabytes: float) -> None:
    """A PNG of random RGB pixels (incompressible) of about ``megabytes`` MiB."""
    from PIL import Image

    side = int((megabytes * 1024 * 1024 / 3) ** 0.5) - 8
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(
        path, "PNG", compress_level=1
    )


def _run(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(peak MiB, seconds) of one fresh process."""
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    peak = next(line for line in proc.stderr.splitlines() if line.startswith("peak_kb"))
    return int(peak.split()[1]) / 1024, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=float, default=49.5, help="the input's size in MiB")
    args = parser.parse_args()

    with ComfyStandIn(step_delay=0.0) as server, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        big = home / "big.png"
        _noise_png(big, args.mb)
        (home / "imagen.yaml").write_text(
            "backends:\n"
            f"  gpu:\n    type: comfyui\n    base_url: {server.url}\n    model: {MODEL}\n"
            f"  edit:\n    type: comfyui\n    base_url: {server.url}\n    model: {MODEL}\n"
            "    template: img2img\n"
        )
        env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEN_")}
        env.update(
            HOME=tmp,
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".data"),
            IMAGEN_LOAD_PLUGINS="imagen-comfyui",
        )
        python = sys.executable
        imagen = [python, "-c", IMAGEN, "generate", "x", "--steps", "2", "-o", str(home / "out")]
        commands = {
            "python + httpx": [python, "-c", FLOOR],
            "httpx, bytes in memory": [python, "-c", IN_MEMORY, server.url, str(big)],
            "httpx, streamed": [python, "-c", STREAMED, server.url, str(big)],
            "imagen generate (text)": [*imagen, "-b", "gpu", "--size", "64x64"],
            "imagen generate --image": [*imagen, "-b", "edit", "--image", str(big)],
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                server.files = {k: v for k, v in server.files.items() if k[0] != "input"}
                samples[name].append(_run(argv, env, tmp))
        uploads = [u for u in server.uploads if u["subfolder"] == "imagen"]
        assert len(uploads) == args.runs, "every imagen run uploads the input once"
        size = big.stat().st_size / (1024 * 1024)
        print(f"input: {size:.1f} MiB PNG; {args.runs} runs each, a fresh process each")
        print(f"{'command':<26}{'peak RSS':>12}{'time':>10}")
        for name, values in samples.items():
            peak = statistics.median(v[0] for v in values)
            seconds = statistics.median(v[1] for v in values)
            print(f"{name:<26}{peak:>8.1f} MiB{seconds:>9.2f}s")
        text = statistics.median(v[0] for v in samples["imagen generate (text)"])
        edit = statistics.median(v[0] for v in samples["imagen generate --image"])
        print(f"the {size:.0f} MiB input adds {edit - text:.1f} MiB to imagen's peak (medians)")


if __name__ == "__main__":
    main()

"""How long `imagen generate` takes to say so when its ComfyUI server dies mid-run.

Run from the workspace root with the dev environment:

    hatch run python bench/comfyui_down.py                 # the server dies and stays down
    hatch run python bench/comfyui_down.py --restart 10    # it restarts, refusing for 10 s
    hatch run python bench/comfyui_down.py --set unreachable_s=60

It starts the loopback ComfyUI of the tests (tests/imagen_comfyui/comfy_standin.py), runs
`imagen generate` against it as a user would (a fresh process, an empty HOME), kills the
server once the run is sampling, and reports the seconds from the kill to imagen's exit,
with its last stderr line and exit code. The reference is the same run left alone: how
long it takes to finish when the server stays up, measured in the same loop.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "imagen_comfyui"))

from comfy_standin import ComfyStandIn


def _run(server: ComfyStandIn, home: Path, kill: bool, restart_s: float | None) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEN_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        IMAGEN_LOAD_PLUGINS="imagen-comfyui",
    )
    server.slow_next(30.0)  # 25 sampler steps over 30 s
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagen", "generate", "a lighthouse", "--backend", "gpu"],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    if not server.wait_until(lambda: server.running is not None, 60):
        proc.kill()
        raise SystemExit(f"the run never started: {''.join(lines)}")
    time.sleep(1.0)  # well into sampling
    started = time.perf_counter()
    if kill:
        server.restart(restart_s) if restart_s else server.kill()
    code = proc.wait()
    seconds = time.perf_counter() - started
    reader.join(5)
    last = lines[-1].strip() if lines else ""
    return {"seconds": round(seconds, 1), "exit_code": code, "last_line": last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restart", type=float, help="restart, refusing for this many s")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    extra = "".join(f"    {item.replace('=', ': ', 1)}\n" for item in args.set)
    results = {}
    for name, kill in (("server left alone (reference)", False), ("server killed", True)):
        with ComfyStandIn() as server, tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            (home / "imagen.yaml").write_text(
                f"backends:\n  gpu:\n    type: comfyui\n    base_url: {server.url}\n"
                f"    model: sd_xl_base_1.0.safetensors\n{extra}"
                f"output:\n  directory: {home / 'out'}\n"
            )
            results[name] = _run(server, home, kill, args.restart)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

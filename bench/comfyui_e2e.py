"""`imagen generate` through ComfyUI, end to end, beside a bare client script doing the same.

Run from the workspace root with the dev environment:

    hatch run python bench/comfyui_e2e.py              # 20 runs each (default)
    hatch run python bench/comfyui_e2e.py --runs 40 --profile
    hatch run python bench/comfyui_e2e.py --python /tmp/venv/bin/python

--python runs the two programs with another interpreter: a venv with only what a user
installs (`pip install -e packages/imagen-core -e packages/imagen-comfyui`), without the
dev environment's extras (rich and h2, which httpx imports when they are there: ~50 ms).

It starts the loopback ComfyUI of the tests (tests/imagen_comfyui/comfy_standin.py; a run
takes it a few milliseconds), then times, interleaved in one loop, fresh processes of:

- `bare client`: the least a Python program can do for one image: import httpx and
  websocket-client, open the websocket, POST the same graph imagen sends, wait for the
  end of the run, download the image from /view and write it to a file;
- `imagen generate`: the same image through `imagen generate -b gpu` with the checkpoint
  template (the plugin, the config, the pipeline, the sidecar, the metadata, the history).

The difference is what imagen adds. With --profile, one more `imagen generate` runs under
`python -X importtime` and cProfile and the biggest costs are printed.
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
BARE = r"""
import json, sys, uuid
import httpx, websocket
base, out = sys.argv[1], sys.argv[2]
graph = json.loads(sys.argv[3])
client_id = prompt_id = str(uuid.uuid4())
ws = websocket.create_connection(base.replace("http", "ws") + f"/ws?clientId={client_id}")
with httpx.Client(base_url=base) as http:
    http.post("/prompt", json={"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}).raise_for_status()
    images = []
    while True:
        frame = ws.recv()
        if isinstance(frame, bytes):
            continue
        event = json.loads(frame)
        data = event.get("data") or {}
        if event["type"] == "executed" and data.get("prompt_id") == prompt_id:
            images += data["output"].get("images", [])
        if event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
            break
    ws.close()
    image = images[0]
    params = {"filename": image["filename"], "subfolder": image["subfolder"], "type": image["type"]}
    with http.stream("GET", "/view", params=params) as response, open(out, "wb") as file:
        for chunk in response.iter_bytes():
            file.write(chunk)
"""


def _graph(seed: int) -> str:
    """The graph imagen's checkpoint template sends for the benchmark's request."""
    import json

    from imagen import BackendConfig, Request
    from imagen_comfyui.settings import read_settings

    settings = read_settings(
        BackendConfig("gpu", "comfyui", {"base_url": "http://x", "model": MODEL})
    )
    request = Request("benchmark lighthouse", seed=seed, width=64, height=64, steps=4)
    graph, _, _ = settings.workflow.apply(request, seed, {})
    return json.dumps(graph)


def _time(argv: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="show where imagen's time goes")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to time")
    args = parser.parse_args()

    with ComfyStandIn(step_delay=0.0) as server, tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "imagen.yaml").write_text(
            f"backends:\n  gpu:\n    type: comfyui\n    base_url: {server.url}\n"
            f"    model: {MODEL}\n"
        )
        env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEN_")}
        env.update(
            HOME=tmp,
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".data"),
            IMAGEN_LOAD_PLUGINS="imagen-comfyui",
        )
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the warm-up runs write the bytecode
        commands = {
            "bare client": lambda n: [
                args.python, "-c", BARE, server.url, str(home / f"bare-{n}.png"), _graph(n)
            ],
            "imagen generate": lambda n: [
                args.python, "-m", "imagen", "generate", "benchmark lighthouse",
                "-b", "gpu", "--seed", str(n), "--size", "64x64", "--steps", "4",
                "-o", str(home / "out"), "-q",
            ],
        }  # fmt: skip
        for make in commands.values():
            _time(make(0), env, tmp)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for n in range(1, args.runs + 1):
            for name, make in commands.items():
                samples[name].append(_time(make(n), env, tmp))
        print(
            f"{args.runs} runs each, a fresh process each, against the loopback ComfyUI "
            f"({args.python})"
        )
        print(f"{'command':<20}{'median':>10}{'p90':>10}{'min':>10}")
        for name, values in samples.items():
            p90 = statistics.quantiles(values, n=10)[-1]
            print(
                f"{name:<20}{statistics.median(values):>8.1f}ms{p90:>8.1f}ms{min(values):>8.1f}ms"
            )
        extra = statistics.median(samples["imagen generate"]) - statistics.median(
            samples["bare client"]
        )
        print(f"imagen adds {extra:.1f} ms (medians)")
        if args.profile:
            _profile(commands["imagen generate"](args.runs + 1), env, tmp)


def _profile(argv: list[str], env: dict[str, str], cwd: str) -> None:
    imports = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    ).stderr.splitlines()
    rows = []
    for line in imports:
        if line.startswith("import time:") and "|" in line:
            _, own, total, name = (part.strip() for part in line.replace(":", "|", 1).split("|"))
            if own.isdigit():
                rows.append((int(total), name.strip()))
    print("\nslowest imports (cumulative µs):")
    for total, name in sorted(rows, reverse=True)[:25]:
        print(f"  {total:>8}  {name}")
    script = (
        "import cProfile, pstats, sys\n"
        "sys.argv = ['imagen', *sys.argv[1:]]\n"
        "from imagen.cli import main\n"
        "profile = cProfile.Profile()\n"
        "try:\n    profile.runcall(main)\nexcept SystemExit:\n    pass\n"
        "pstats.Stats(profile, stream=sys.stderr).sort_stats('cumulative').print_stats(30)\n"
    )
    proc = subprocess.run(
        [argv[0], "-c", script, *argv[3:]],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    print(proc.stderr[-6000:])


if __name__ == "__main__":
    main()

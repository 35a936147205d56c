"""Start-up benchmark: `imagen --help` and `imagen generate` beside `llm --help`.

Run from the workspace root in the bench environment, which installs every adapter and
`llm` (Simon Willison's CLI, the reference issue 15 measures against):

    hatch run bench:startup            # 30 runs each (default)
    hatch run bench:startup --runs 50

Each command runs as a fresh process, as a user would run it, with an empty HOME (no
config: the built-in offline backend) and output to a temporary directory. The references,
`python -c pass` and `llm --help`, run in the same loop, interleaved, so machine noise hits
all alike. Targets on a 2-core machine: --help 10x faster than `llm --help` (median), and
generate 512x512 <= 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _script(name: str) -> str | None:
    script = Path(sys.executable).with_name(name)
    return str(script) if script.exists() else shutil.which(name)


def _time(argv: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {key: value for key, value in os.environ.items() if not key.startswith("IMAGEN_")}
        env.update(HOME=tmp, XDG_CONFIG_HOME=os.path.join(tmp, ".config"))
        # Installed packages have their bytecode cached; let the warm-up run write it.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        imagen = _script("imagen") or "imagen"
        llm = _script("llm")
        if llm is None:
            sys.exit("llm is not installed here: run this as `hatch run bench:startup`")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "llm --help": [llm, "--help"],
            "imagen --help": [imagen, "--help"],
            "imagen generate 512x512": [
                imagen,
                "generate",
                "benchmark lighthouse",
                "--seed",
                "7",
                "--size",
                "512x512",
                "-o",
                os.path.join(tmp, "out"),
                "-q",
            ],
        }
        for argv in commands.values():  # warm the OS file cache once
            _time(argv, env, tmp)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                samples[name].append(_time(argv, env, tmp))

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
        f"{os.cpu_count()} cores, {args.runs} runs each"
    )
    print(f"{'command':<26}{'median':>10}{'p90':>10}{'min':>10}")
    for name, row in results.items():
        print(f"{name:<26}{row['median_ms']:>8.1f}ms{row['p90_ms']:>8.1f}ms{row['min_ms']:>8.1f}ms")
    ratio = results["llm --help"]["median_ms"] / results["imagen --help"]["median_ms"]
    print(f"imagen --help is {ratio:.1f}x faster than llm --help (medians; target: 10x)")
    results["ratio_llm_over_imagen_help"] = round(ratio, 2)  # type: ignore[assignment]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

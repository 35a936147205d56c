"""``imagen resume`` on Replicate predictions, through the real SDK against the stand-in."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from replicate_standin import TOKEN


def _home(home, replicate_api):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-replicate"
    home.env["REPLICATE_API_TOKEN"] = TOKEN
    home.write_config(
        f"""
        backends:
          flux:
            type: replicate
            model: black-forest-labs/flux-schnell
            base_url: {replicate_api.url}
            poll_interval_s: 0.05
        """
    )
    return home


def _wait(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_prediction_left_by_a_killed_imagen_is_resumed_not_created_again(home, replicate_api):
    home = _home(home, replicate_api)
    runs = Path(home.env["XDG_DATA_HOME"]) / "imagen" / "runs"
    replicate_api.slow_next(3.0)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagen",
            "generate",
            "a fox in snow",
            "--backend",
            "flux",
            "-n",
            "2",
        ],
        cwd=home.cwd,
        env=home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert _wait(lambda: any(runs.glob("*.json")))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    (prediction_id,) = replicate_api.predictions
    listing = home.run("resume", "--list", check=True).stdout
    assert listing.startswith(f"{prediction_id}  flux  ")

    resumed = home.run("resume", "--yes", "--json", check=True)
    result = json.loads(resumed.stdout)
    assert len(result["images"]) == 2
    record = json.loads(Path(result["images"][0]["sidecar"]).read_text())
    assert (record["prompt"], record["count"]) == ("a fox in snow", 2)
    assert record["seed"] == replicate_api.predictions[prediction_id].input["seed"]  # imagen's
    assert record["backend_type"] == "replicate"
    assert record["metadata"]["prediction_id"] == prediction_id
    assert replicate_api.count("POST", "/v1/models") == 1  # never created again
    assert TOKEN not in resumed.stdout + resumed.stderr
    assert home.run("resume", "--list", check=True).stdout == ""

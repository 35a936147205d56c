"""``imagen resume`` on ComfyUI runs: after imagen was killed, gave up, or the run was lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

MODEL = "sd_xl_base_1.0.safetensors"
ARGS = ("generate", "a red barn", "--backend", "gpu", "--style", "noir", "--seed", "12")


def _config(home, comfy, suffix: str = ", film noir", extra: str = "") -> None:
    home.write_config(
        f"""
        backends:
          gpu:
            type: comfyui
            base_url: {comfy.url}
            model: {MODEL}
            default_steps: 6
        {extra}
        styles:
          noir:
            suffix: "{suffix}"
            size: 320x192
        """
    )


def _runs(home) -> Path:
    return Path(home.env["XDG_DATA_HOME"]) / "imagen" / "runs"


def _start(home, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "imagen", *args],
        cwd=home.cwd,
        env=home.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _killed_mid_run(home, comfy) -> str:
    """Start ``imagen generate`` on a slow run, kill it once the run is recorded; its id."""
    comfy.slow_next(3.0)
    proc = _start(home, *ARGS)
    assert comfy.wait_until(lambda: comfy.running is not None and any(_runs(home).glob("*")), 60)
    proc.send_signal(signal.SIGKILL)  # a closed laptop, a killed terminal
    proc.communicate(timeout=30)
    return comfy.received[-1]["prompt_id"]


def test_resume_saves_what_generate_would_have_saved(gpu_home, comfy, tmp_path):
    _config(gpu_home, comfy)
    run_id = _killed_mid_run(gpu_home, comfy)
    assert not gpu_home.pictures.exists() or not any(gpu_home.pictures.iterdir())  # nothing yet
    _config(gpu_home, comfy, suffix=", watercolour")  # the style is edited meanwhile

    listing = gpu_home.run("resume", "--list", check=True).stdout
    assert listing.startswith(f"{run_id}  gpu  ")
    assert listing.rstrip().endswith("a red barn")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()  # no imagen.yaml here: the run's own config file is used
    proc = subprocess.run(
        [sys.executable, "-m", "imagen", "resume"],
        cwd=elsewhere,
        env=gpu_home.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(
        f'imagen: resuming run {run_id} (backend "gpu", "a red barn", started '
    )
    path = Path(proc.stdout.strip())
    assert path.parent == gpu_home.pictures  # where the first command was saving
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["prompt"] == "a red barn"
    assert record["final_prompt"] == "a red barn, film noir"  # the style as it was then
    assert record["style"] == "noir"
    assert (record["seed"], record["width"], record["height"]) == (12, 320, 192)
    assert record["metadata"]["prompt_id"] == run_id
    assert record["metadata"]["inputs"]["6.text"] == "a red barn, film noir"
    assert record["metadata"]["inputs"]["3.seed"] == 12
    assert len(comfy.received) == 1  # never submitted again

    again = gpu_home.run("resume", stdin=subprocess.DEVNULL)
    assert again.returncode == 2
    assert again.stderr == "imagen: no unfinished run to resume\n"
    assert gpu_home.run("resume", "--list", check=True).stdout == ""


def test_a_run_given_up_on_is_resumed_by_id_when_the_server_is_back(gpu_home, comfy):
    _config(gpu_home, comfy, extra="    unreachable_s: 1\n")
    comfy.slow_next(4.0)
    proc = _start(gpu_home, *ARGS)
    assert comfy.wait_until(lambda: comfy.running is not None, 60)
    comfy.outage(6.0)  # longer than imagen waits; ComfyUI itself runs on
    _, stderr = proc.communicate(timeout=120)
    run_id = comfy.received[-1]["prompt_id"]
    assert proc.returncode == 5
    assert stderr.rstrip().endswith(f"to save its images later: imagen resume {run_id}")

    assert comfy.wait_until(lambda: comfy.up and run_id in comfy.history, 60)
    proc = gpu_home.run("resume", run_id[:8])  # enough of the id to name it
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    record = json.loads(Path(proc.stdout.strip()).with_suffix(".json").read_text())
    assert record["metadata"]["prompt_id"] == run_id
    assert len(comfy.received) == 1


def test_a_run_the_server_lost_is_reported_and_forgotten(gpu_home, comfy):
    _config(gpu_home, comfy)
    run_id = _killed_mid_run(gpu_home, comfy)
    comfy.restart()
    proc = gpu_home.run("resume", run_id)
    assert proc.returncode == 4
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f'imagen: backend "gpu": run {run_id} was lost: ')
    assert line.endswith(
        "nothing was saved; to make it anew: imagen generate 'a red barn' --backend gpu "
        "--style noir --seed 12"
    )
    assert len(comfy.received) == 1
    assert gpu_home.run("resume", "--list", check=True).stdout == ""


def test_a_run_still_followed_is_not_resumed_twice(gpu_home, comfy):
    _config(gpu_home, comfy)
    comfy.slow_next(4.0)
    proc = _start(gpu_home, *ARGS)
    assert comfy.wait_until(
        lambda: comfy.running is not None and any(_runs(gpu_home).glob("*")), 60
    )
    run_id = comfy.received[-1]["prompt_id"]
    busy = gpu_home.run("resume", run_id)
    assert busy.returncode == 2
    assert busy.stderr == (
        f"imagen: run {run_id} is still followed by imagen (process {proc.pid}): let it finish, "
        "or stop it first (--force resumes it all the same)\n"
    )
    none = gpu_home.run("resume", stdin=subprocess.DEVNULL)
    assert none.returncode == 2
    assert none.stderr == "imagen: no unfinished run to resume (1 still followed)\n"
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert not any(_runs(gpu_home).glob("*.json"))  # finished: forgotten


def test_an_unknown_run_id_is_a_usage_error(gpu_home, comfy):
    _config(gpu_home, comfy)
    proc = gpu_home.run("resume", "0f3c")
    assert proc.returncode == 2
    assert proc.stderr == (
        "imagen: no record of an unfinished run '0f3c' (imagen resume --list shows the runs "
        "imagen generate left unfinished here)\n"
    )

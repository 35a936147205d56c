"""``imagen generate --backend <comfyui instance>`` end to end, and memory on a large image."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

from PIL import Image

from imagen.metadata import png

MODEL = "sd_xl_base_1.0.safetensors"
# VmHWM is this process's peak resident memory. (getrusage's ru_maxrss would also count
# the memory of the test process that forked it, since Linux keeps it across execve.)
RSS_PROBE = """
import re, sys
from imagen.cli import main
sys.argv = ["imagen", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    code = exit.code
status = open("/proc/self/status").read()
print("maxrss_kb", re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1), file=sys.stderr)
sys.exit(code)
"""


def test_generate_through_the_cli(gpu_home, comfy):
    proc = gpu_home.run(
        "generate",
        "a red barn at dawn",
        "--backend",
        "gpu",
        "--seed",
        "12",
        "--size",
        "320x192",
        "-n",
        "2",
        "--json",
        check=True,
    )
    result = json.loads(proc.stdout)
    assert len(result["images"]) == 2
    path = Path(result["images"][0]["path"])
    with path.open("rb") as file:
        texts, size = png.read_text(file)
    assert size == (320, 192)
    assert json.loads(texts["prompt"])["6"]["inputs"]["text"] == "a red barn at dawn"  # ComfyUI's
    record = json.loads(texts["imagen"])  # imagen's, beside it
    assert record["backend_type"] == "comfyui"
    assert record["metadata"]["prompt_id"] == comfy.received[-1]["prompt_id"]
    assert record["metadata"]["inputs"]["3.seed"] == 12
    assert comfy.received[-1]["prompt"]["3"]["inputs"]["steps"] == 6  # the slice's default_steps
    assert record["reproducible"] is True
    info = gpu_home.run("info", str(path), check=True).stdout
    assert "backend: gpu (type comfyui)" in info
    assert "model:   sd_xl_base_1.0.safetensors" in info


def test_cli_errors_are_one_line(gpu_home, comfy):
    gpu_home.write_config(
        f"backends:\n  gpu:\n    type: comfyui\n    base_url: {comfy.url}\n"
        "    model: missing.safetensors\n"
    )
    proc = gpu_home.run("generate", "x", "--backend", "gpu")
    assert proc.returncode == 4
    assert proc.stderr.startswith('imagen: backend "gpu": ComfyUI rejected the workflow')
    assert "it has: sd_xl_base_1.0.safetensors" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    check = gpu_home.run("config", "check")
    assert check.returncode == 0  # building needs no network; the model is checked on use
    assert "ok    gpu (comfyui)" in check.stdout


def _noise_png(width: int, height: int) -> bytes:
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=0)
    return out.getvalue()


def _max_rss_kb(home, *args: str) -> int:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, *args],
        cwd=home.cwd,
        env=home.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stderr.splitlines() if l.startswith("maxrss_kb"))
    return int(line.split()[1])


def test_a_large_image_streams_to_disk_with_bounded_memory(gpu_home, comfy):
    args = ("generate", "big", "--backend", "gpu", "-q", "--seed")
    comfy.big_image = _noise_png(256, 256)
    baseline = _max_rss_kb(gpu_home, *args, "1")
    comfy.big_image = _noise_png(3000, 3000)  # 27 MB
    size_mb = len(comfy.big_image) / 2**20
    assert size_mb > 25
    peak = _max_rss_kb(gpu_home, *args, "2")  # another seed: ComfyUI would cache the same graph
    saved = next(gpu_home.pictures.glob("*-big-2.png"))
    assert saved.stat().st_size > len(comfy.big_image)  # the whole image, plus imagen's chunks
    growth_mb = (peak - baseline) / 1024
    # Held whole in memory, a 27 MB download costs at least 27 MB more; streamed, a few.
    assert growth_mb < size_mb / 3, f"peak RSS grew {growth_mb:.1f} MB for a {size_mb:.0f} MB image"


def test_core_and_comfyui_alone_in_a_fresh_venv(home, comfy, tmp_path):
    """`pip install imagen-core imagen-comfyui` is all a user needs."""
    import subprocess
    import venv

    root = Path(__file__).resolve().parents[2] / "packages"
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    env = {k: v for k, v in home.env.items() if k not in ("PYTHONPATH", "IMAGEN_LOAD_PLUGINS")}
    install = subprocess.run(
        [
            str(env_dir / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            str(root / "imagen-core"),
            str(root / "imagen-comfyui"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    imagen = str(env_dir / "bin" / "imagen")
    home.write_config(
        f"backends:\n  gpu:\n    type: comfyui\n    base_url: {comfy.url}\n    model: {MODEL}\n"
    )
    listing = subprocess.run(
        [imagen, "backends"],
        cwd=home.cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "comfyui  imagen-comfyui 0.1.0" in listing
    proc = subprocess.run(
        [imagen, "generate", "fresh venv", "--backend", "gpu", "--size", "64x64"],
        cwd=home.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_file()


def test_a_token_the_proxy_refuses_exits_3_like_any_credential(home):
    from comfy_standin import ComfyStandIn

    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-comfyui"
    home.env["COMFY_TOKEN"] = "stale-token-123456"
    with ComfyStandIn(token="the-right-token") as guarded:
        home.write_config(
            f"""
            backends:
              gpu:
                type: comfyui
                base_url: {guarded.url}
                model: {MODEL}
                token_env: COMFY_TOKEN
            """
        )
        proc = home.run("generate", "a red barn", "--backend", "gpu")
    assert proc.returncode == 3  # docs/cli.md: a credential; not 4, a failed generation
    assert "(401): check `headers` and `token_env`" in proc.stderr
    assert "stale-token-123456" not in proc.stderr


def test_an_option_is_refused_since_comfyui_takes_none(gpu_home, comfy):
    proc = gpu_home.run("generate", "a barn", "-b", "gpu", "--opt", "cfg=7")
    assert proc.returncode == 2
    assert proc.stderr == 'imagen: backend "gpu" takes no options, not --opt cfg\n'
    assert comfy.received == []


def test_prompts_from_a_file_one_failure_stops_none(gpu_home, comfy):
    (gpu_home.cwd / "prompts.txt").write_text("breaks\nred barn\nblue barn\n")
    comfy.fail_next("permanent")  # the first run ComfyUI gets fails in its sampler
    proc = gpu_home.run(
        "generate", "--prompts", "prompts.txt", "-b", "gpu", "--size", "64x64", "-j", "1"
    )
    assert proc.returncode == 9  # some failed; the others' images are saved
    assert proc.stderr.startswith('imagen: prompts.txt:1: backend "gpu": ')
    saved = proc.stdout.split()
    assert len(saved) == 2
    assert all(Path(path).exists() for path in saved)
    comfy.fail_next("permanent")
    (gpu_home.cwd / "one.txt").write_text("only\n")
    proc = gpu_home.run("generate", "--prompts", "one.txt", "-b", "gpu", "--size", "64x64")
    assert proc.returncode == 4  # every prompt failed: the failure's own code

"""``imagen generate`` end to end, through the real console script."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from imagen.metadata import png


def _image(path: Path | str) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def _pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def test_no_config_generates_into_pictures(home):
    proc = home.run("generate", "a lighthouse at dusk", "--seed", "42", check=True)
    path = Path(proc.stdout.strip())
    assert path.parent == home.pictures
    assert path.name.endswith("-a-lighthouse-at-dusk-42.png")
    with Image.open(path) as image:
        assert image.size == (512, 512)
        assert "parameters" in image.info
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["prompt"] == "a lighthouse at dusk"
    assert sidecar["backend"] == "mock"
    assert sidecar["seed"] == 42
    assert sidecar["created"].endswith("Z")
    assert sidecar["reproducible"] is True
    assert sidecar["metadata"]["model"] == "imagen-mock"
    assert proc.stderr == ""


def test_sidecar_holds_every_field(home):
    home.write_config(
        """
        styles:
          noir:
            suffix: ", film noir"
            negative_suffix: colour
            size: 96x64
            steps: 12
        """
    )
    proc = home.run(
        "generate",
        "detective",
        "--style",
        "noir",
        "--negative",
        "daylight",
        "--opt",
        "delay=0",
        "--json",
        check=True,
    )
    result = json.loads(proc.stdout)
    image = result["images"][0]
    record = json.loads(Path(image["sidecar"]).read_text())
    expected = {
        "prompt": "detective",
        "final_prompt": "detective, film noir",
        "negative_prompt": "daylight",
        "final_negative_prompt": "daylight, colour",
        "style": "noir",
        "backend": "mock",
        "backend_type": "mock",
        "width": 96,
        "height": 64,
        "steps": 12,
        "count": 1,
        "index": 1,
        "options": {"delay": 0},
        "mime_type": "image/png",
    }
    assert {key: record[key] for key in expected} == expected
    assert isinstance(record["seed"], int)  # chosen, and recorded so it can be made again
    assert record["image_seed"] == record["seed"]
    assert record["duration_s"] >= 0
    assert sorted(record["metadata"]["ignored"]) == ["negative_prompt", "steps"]
    embedded = json.loads(_image(image["path"]).info["imagen"])
    assert embedded == record
    # The user set a negative prompt the backend ignores: say so, once.
    assert 'backend "mock" ignored: negative_prompt' in proc.stderr


def test_count_and_index_naming(home):
    home.write_config('output:\n  naming: "{slug}-{index}.{ext}"\n')
    proc = home.run("generate", "fox", "-n", "3", "--seed", "5", "--size", "64x64", check=True)
    paths = [Path(line) for line in proc.stdout.splitlines()]
    assert [p.name for p in paths] == ["fox-1.png", "fox-2.png", "fox-3.png"]
    records = [json.loads(p.with_suffix(".json").read_text()) for p in paths]
    assert [r["index"] for r in records] == [1, 2, 3]
    assert [r["image_seed"] for r in records] == [5, 6, 7]
    again = home.run("generate", "fox", "-n", "1", "--seed", "5", "--size", "64x64", check=True)
    assert Path(again.stdout.strip()).name == "fox-1-1.png"  # never overwritten


def test_output_dir_flag_and_formats(home, tmp_path):
    out = tmp_path / "renders"
    proc = home.run(
        "generate",
        "fox",
        "--opt",
        "format=webp",
        "-o",
        str(out),
        "--seed",
        "3",
        "--width",
        "80",
        "--height",
        "40",
        check=True,
    )
    path = Path(proc.stdout.strip())
    assert path.parent == out
    assert path.suffix == ".webp"
    assert _image(path).size == (80, 40)


def test_prompt_from_stdin(home):
    proc = home.run(
        "generate", "-", "--seed", "1", "--size", "32x32", input="owl at night\n", check=True
    )
    assert "owl-at-night" in proc.stdout


def test_info_shows_the_styles_negative_prompt(home):
    home.write_config("styles:\n  noir:\n    negative_suffix: colour, blur\n")
    alone = home.run("generate", "a cat", "--style", "noir", "-q", check=True).stdout.strip()
    rows = dict(
        line.split(":", 1) for line in home.run("info", alone, check=True).stdout.splitlines()
    )
    assert "negative" not in rows  # the user gave none
    assert rows["final negative"].strip() == "colour, blur"
    both = home.run(
        "generate", "a cat", "--style", "noir", "--negative", "dogs", "-q", check=True
    ).stdout.strip()
    rows = dict(
        line.split(":", 1) for line in home.run("info", both, check=True).stdout.splitlines()
    )
    assert rows["negative"].strip() == "dogs"
    assert rows["final negative"].strip() == "dogs, colour, blur"


def test_info_and_replay_give_the_same_pixels(home):
    home.write_config("styles:\n  soft:\n    suffix: pastel\n")
    first = Path(
        home.run(
            "generate", "koi pond", "--style", "soft", "--size", "64x48", check=True
        ).stdout.strip()
    )
    info = home.run("info", str(first), check=True).stdout
    assert "source:       imagen metadata inside the file" in info
    assert "final prompt: koi pond, pastel" in info
    assert "promises it" in info
    replay = Path(home.run("generate", "--from", str(first), check=True).stdout.strip())
    assert replay != first
    assert _pixels(replay) == _pixels(first)
    bigger = Path(
        home.run("generate", "--from", str(first), "--size", "96x96", check=True).stdout.strip()
    )
    assert _image(bigger).size == (96, 96)
    record = json.loads(bigger.with_suffix(".json").read_text())
    assert record["final_prompt"] == "koi pond, pastel"
    assert record["seed"] == json.loads(first.with_suffix(".json").read_text())["seed"]


def test_replay_of_one_image_of_a_batch(home):
    proc = home.run("generate", "bees", "-n", "3", "--seed", "20", "--size", "48x48", check=True)
    third = Path(proc.stdout.splitlines()[2])
    replay = Path(home.run("generate", "--from", str(third), check=True).stdout.strip())
    assert _pixels(replay) == _pixels(third)


def test_replay_from_jpeg_uses_sidecar(home):
    jpeg = Path(
        home.run(
            "generate", "heron", "--opt", "format=jpeg", "--size", "40x40", check=True
        ).stdout.strip()
    )
    info = json.loads(home.run("info", "--json", str(jpeg), check=True).stdout)
    assert info["source"] == "sidecar"
    assert info["fields"]["prompt"] == "heron"
    jpeg.with_suffix(".json").unlink()
    info = json.loads(home.run("info", "--json", str(jpeg), check=True).stdout)
    assert info["source"] == "a1111"  # the EXIF UserComment still tells
    replay = home.run("generate", "--from", str(jpeg), check=True)
    assert Path(replay.stdout.strip()).suffix == ".png"


def test_replay_from_unknown_backend_is_a_clear_error(home):
    path = Path(home.run("generate", "crane", "--size", "32x32", check=True).stdout.strip())
    record = json.loads(path.with_suffix(".json").read_text())
    record["backend"] = "gpu-box"
    path.with_suffix(".json").write_text(json.dumps(record))
    # The embedded chunk wins over the sidecar: patch it too.
    out = io.BytesIO()
    with path.open("rb") as src:
        png.copy_with_text(src, out, lambda w, h: {"imagen": json.dumps(record)})
    path.write_bytes(out.getvalue())
    proc = home.run("generate", "--from", str(path))
    assert proc.returncode == 3
    assert 'was made by backend "gpu-box", which is not configured here' in proc.stderr


def test_usage_errors(home):
    proc = home.run("generate")
    assert proc.returncode == 2
    assert "give a PROMPT, or --from IMAGE" in proc.stderr
    proc = home.run("generate", "x", "--size", "big")
    assert proc.returncode == 2
    assert "size must look like 1024x768" in proc.stderr
    proc = home.run("generate", "x", "--opt", "novalue")
    assert proc.returncode == 2
    assert "expected KEY=VALUE" in proc.stderr
    proc = home.run("generate", "x", "--style", "nope")
    assert proc.returncode == 2
    assert proc.stderr.strip() == 'imagen: unknown style "nope" (known: none are configured)'
    proc = home.run("info", "missing.png")
    assert proc.returncode == 2
    assert "missing.png: no such file" in proc.stderr


def test_backend_failures_exit_codes_and_no_traceback(home):
    expectations = {"permanent": 4, "transient": 5, "config": 3}
    for mode, code in expectations.items():
        proc = home.run("generate", "x", "--opt", f"fail={mode}")
        assert proc.returncode == code, proc.stderr
        assert proc.stderr.startswith('imagen: backend "mock": simulated')
        assert "Traceback" not in proc.stderr
    proc = home.run("generate", "x", "--size", "9000x10")
    assert proc.returncode == 2  # impossible as asked: refused before the backend is called
    assert proc.stderr == (
        'imagen: backend "mock": width 9000 is out of bounds for the mock backend '
        "(16 to 4096 pixels)\n"
    )
    assert not home.pictures.exists() or not any(home.pictures.iterdir())


def test_debug_shows_the_traceback(home):
    proc = home.run("--debug", "generate", "x", "--opt", "fail=permanent")
    assert proc.returncode == 4
    assert "Traceback" in proc.stderr
    proc = home.run("generate", "x", "-v", "--opt", "fail=permanent")
    assert "Traceback" in proc.stderr


def test_unwritable_output_is_exit_7(home):
    blocker = home.cwd / "blocker"
    blocker.write_text("")
    proc = home.run("generate", "x", "-o", str(blocker / "sub"))
    assert proc.returncode == 7
    assert "cannot write to" in proc.stderr


def test_ctrl_c_cancels_cleanly_and_leaves_nothing(home):
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagen", "generate", "slow", "--opt", "delay=30"],
        cwd=home.cwd,
        env=home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # let it start and enter the delay
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "imagen: cancelled" in stderr
    assert stdout == ""
    assert not home.pictures.exists() or list(home.pictures.iterdir()) == []


def test_progress_goes_to_a_terminal_stderr(home):
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagen",
            "generate",
            "slow",
            "--steps",
            "4",
            "--opt",
            "delay=0.4",
            "--size",
            "32x32",
        ],
        cwd=home.cwd,
        env=home.env,
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    stdout, _ = proc.communicate(timeout=30)
    os.close(main)
    assert proc.returncode == 0
    text = seen.decode()
    assert "mock: [#####---------------] 1/4" in text
    assert "mock: [####################] 4/4" in text
    assert re.search(r"finished *\r +\rimagen: ", text)  # the line is erased before notes
    assert stdout.decode().strip().endswith(".png")


def test_no_progress_when_stderr_is_not_a_terminal(home):
    proc = home.run("generate", "x", "--opt", "delay=0.2", "--size", "32x32", check=True)
    assert proc.stderr == ""


def test_python_dash_m_and_version(home):
    proc = home.run("--version", check=True)
    assert proc.stdout.startswith("imagen, version ")

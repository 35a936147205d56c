"""Retries through ``imagen generate``: shown on the progress line and in ``-v`` logs; a 501
is not retried."""

from __future__ import annotations

from pathlib import Path


def test_a_retry_shows_on_the_progress_line(gpu_home, comfy):
    comfy.fail_next("transient", times=1)  # one 503, then ComfyUI answers
    code, stdout, terminal = gpu_home.run_on_terminal(
        "generate", "a barn", "-b", "gpu", "--seed", "3", "--size", "64x64"
    )
    assert code == 0, terminal.decode(errors="replace")
    assert Path(stdout.strip()).exists()
    shown = terminal.decode()
    assert "gpu: retry 1 of 3 in " in shown
    assert "answered POST /prompt with 503" in shown
    assert len(comfy.received) == 2


def test_a_retry_is_logged_with_verbose(gpu_home, comfy):
    comfy.fail_next("transient", times=1)
    proc = gpu_home.run("generate", "a barn", "-b", "gpu", "--size", "64x64", "-v")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "retry 1 of 3" in line]
    assert lines, proc.stderr
    assert lines[0].startswith("imagen: submitting the workflow failed; retry 1 of 3 in ")
    assert lines[0].endswith("answered POST /prompt with 503")


def test_a_501_is_not_retried(gpu_home, comfy):
    comfy.fail_next("transient", times=5, status=501)
    proc = gpu_home.run("generate", "a barn", "-b", "gpu", "--size", "64x64")
    assert proc.returncode == 4, proc.stderr
    assert "answered POST /prompt with 501" in proc.stderr
    assert "retry" not in proc.stderr
    assert len(comfy.received) == 1  # asked once: Not Implemented stays so

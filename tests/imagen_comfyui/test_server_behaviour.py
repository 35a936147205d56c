"""What a real ComfyUI does that imagen must meet (issue 14, items 1-7), against the stand-in.

1. a workflow whose outputs partly validate runs the valid ones: imagen says which not;
2. a server that dies and stays down is noticed and given up on after ``unreachable_s``;
3. multi-line runtime errors are one line in the CLI, whole with ``--debug``;
4. ``--size`` on a workflow without a size input is warned about;
5. every seed input gets the seed, sampler or not;
6. a second Ctrl-C still interrupts the run on the server before imagen exits;
7. rejection texts read cleanly.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from imagen import (
    Cancelled,
    Context,
    PermanentBackendError,
    Request,
    RunLostError,
    TransientBackendError,
)
from imagen.testing import RecordingContext

WORKFLOWS = Path(__file__).parent / "workflows"
MODEL = "sd_xl_base_1.0.safetensors"


def _workflow(tmp_path: Path, name: str, **changes: dict) -> str:
    graph = json.loads((WORKFLOWS / name).read_text())
    for node, inputs in changes.items():
        graph[node]["inputs"].update(inputs)
    (tmp_path / name).write_text(json.dumps(graph))
    return name


def _in_thread(call):
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = call()
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _steps_began(context: RecordingContext):
    return lambda: any(event.kind == "step" for event in context.events)


# -- 1. part of a workflow left out --------------------------------------------------------


def test_outputs_left_out_by_validation_are_warned_about_and_recorded(
    comfy, make_backend, tmp_path, caplog
):
    backend = make_backend(workflow=_workflow(tmp_path, "two_outputs.json"))
    with caplog.at_level(logging.WARNING, logger="imagen"):
        result = backend.generate(Request("a lighthouse", seed=3), RecordingContext())
    assert len(result.images) == 1  # the base branch ran
    assert comfy.history[result.metadata["prompt_id"]]["prompt"][4] == ["9"]
    reason = result.metadata["skipped_outputs"]["13"]
    assert reason.startswith(
        'node 14 (CheckpointLoaderSimple "Refiner checkpoint"): ckpt_name: '
        "'sd_xl_refiner_1.0.safetensors' is not on the server; it has: sd_xl_base_1.0"
    )
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        'backend "gpu": ComfyUI runs only part of the workflow: output 13 (SaveImage '
        f'"Save refined") is left out: {reason}'
    )


def test_a_fully_valid_workflow_reports_nothing_left_out(comfy, make_backend, tmp_path):
    name = _workflow(tmp_path, "two_outputs.json", **{"14": {"ckpt_name": MODEL}})
    result = make_backend(workflow=name).generate(Request("both", seed=3), RecordingContext())
    assert len(result.images) == 2
    assert "skipped_outputs" not in result.metadata


def test_the_cli_warns_of_a_left_out_output_and_saves_the_rest(gpu_home, comfy, tmp_path):
    _workflow(gpu_home.cwd, "two_outputs.json")
    gpu_home.write_config(
        f"backends:\n  flow:\n    type: comfyui\n    base_url: {comfy.url}\n"
        "    workflow: two_outputs.json\n"
    )
    proc = gpu_home.run("generate", "a lighthouse", "--backend", "flow", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith(
        'imagen: backend "flow": ComfyUI runs only part of the workflow: output 13 (SaveImage '
        '"Save refined") is left out: node 14 (CheckpointLoaderSimple "Refiner checkpoint")'
    )
    sidecar = json.loads(Path(proc.stdout.strip()).with_suffix(".json").read_text())
    assert "13" in sidecar["metadata"]["skipped_outputs"]


# -- 2. a server that dies and stays down ----------------------------------------------------


def test_a_server_that_stays_down_is_given_up_on_after_unreachable_s(comfy, make_backend):
    comfy.slow_next(60)
    backend = make_backend(unreachable_s=1.0)  # idle_timeout_s stays at its 1800 s
    context = RecordingContext()
    thread, outcome = _in_thread(lambda: backend.generate(Request("doomed", seed=1), context))
    assert comfy.wait_until(_steps_began(context))
    comfy.kill()
    thread.join(60)
    error = outcome.get("error")
    assert isinstance(error, TransientBackendError), error
    run_id = context.run_ids[0]
    assert error.upstream_id == run_id
    assert str(error).startswith(f"cannot reach ComfyUI at {comfy.url}: ")
    assert str(error).endswith(
        f"gave up after 1 s (unreachable_s is 1): run {run_id} may still finish there"
    )
    statuses = [event.message for event in context.events if event.kind == "status"]
    assert "cannot reach ComfyUI; trying again" in statuses  # the line does not freeze


def test_a_restart_within_unreachable_s_reports_the_run_lost(comfy, make_backend):
    comfy.slow_next(60)
    backend = make_backend(unreachable_s=30.0)
    context = RecordingContext()
    thread, outcome = _in_thread(lambda: backend.generate(Request("restarted", seed=1), context))
    assert comfy.wait_until(_steps_began(context))
    comfy.restart(down_s=1.5)  # the port refuses meanwhile; then an empty queue and history
    thread.join(60)
    error = outcome.get("error")
    assert isinstance(error, RunLostError), error
    assert "was lost: ComfyUI has it neither queued, running nor in its history" in str(error)


def test_an_outage_shorter_than_unreachable_s_is_ridden_out(comfy, make_backend):
    comfy.slow_next(3.0)
    backend = make_backend(unreachable_s=30.0)
    context = RecordingContext()
    thread, outcome = _in_thread(lambda: backend.generate(Request("patient", seed=1), context))
    assert comfy.wait_until(_steps_began(context))
    comfy.outage(1.0)
    thread.join(60)
    assert "result" in outcome, outcome.get("error")
    assert len(outcome["result"].images) == 1
    assert len(comfy.received) == 1  # followed to its end, never submitted again
    statuses = [event.message for event in context.events if event.kind == "status"]
    assert statuses.index("cannot reach ComfyUI; trying again") < statuses.index(
        "reached ComfyUI again"
    )


def test_the_cli_says_cannot_reach_with_the_run_id_on_one_line(gpu_home, comfy):
    gpu_home.write_config(
        f"backends:\n  gpu:\n    type: comfyui\n    base_url: {comfy.url}\n    model: {MODEL}\n"
        "    unreachable_s: 1\n"
    )
    comfy.slow_next(60)
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagen", "generate", "x", "--backend", "gpu"],
        cwd=gpu_home.cwd,
        env=gpu_home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert comfy.wait_until(lambda: comfy.running is not None, 60)
    comfy.kill()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 5, stderr
    run_id = comfy.received[-1]["prompt_id"]
    (line,) = stderr.splitlines()
    assert line.startswith(f'imagen: backend "gpu": cannot reach ComfyUI at {comfy.url}: ')
    assert line.endswith(
        f"run {run_id} may still finish there; to save its images later: imagen resume {run_id}"
    )
    assert stdout == ""


# -- 3. one-line errors ------------------------------------------------------------------------


def test_a_multi_line_runtime_error_keeps_its_whole_text(comfy, make_backend, tmp_path):
    name = _workflow(tmp_path, "sdxl_api.json", **{"9": {"filename_prefix": "../escape"}})
    with pytest.raises(PermanentBackendError) as raised:
        make_backend(workflow=name).generate(Request("x", seed=1), Context())
    lines = str(raised.value).splitlines()
    assert lines[0] == (
        'ComfyUI failed in node 9 (SaveImage "Save Image"): Exception: **** ERROR: Saving image '
        "outside the output folder is not allowed."
    )
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "full_output_folder",
        "output_dir",
        "commonpath",
    ]


def test_any_node_can_fail_at_run_time(comfy, make_backend):
    comfy.fail_next("permanent", node_class="VAEDecode", message="Allocation on device")
    with pytest.raises(PermanentBackendError) as raised:
        make_backend().generate(Request("x", seed=1), Context())
    assert str(raised.value) == (
        'ComfyUI failed in node 8 (VAEDecode "VAE Decode"): RuntimeError: Allocation on device'
    )


def test_the_cli_prints_a_multi_line_error_on_one_line_and_all_of_it_with_debug(gpu_home, comfy):
    _workflow(gpu_home.cwd, "sdxl_api.json", **{"9": {"filename_prefix": "../escape"}})
    gpu_home.write_config(
        f"backends:\n  flow:\n    type: comfyui\n    base_url: {comfy.url}\n"
        "    workflow: sdxl_api.json\n"
    )
    proc = gpu_home.run("generate", "x", "--backend", "flow", "--seed", "1")
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == [
        (
            'imagen: backend "flow": ComfyUI failed in node 9 (SaveImage "Save Image"): '
            "Exception: **** ERROR: Saving image outside the output folder is not allowed. "
            "(+3 more lines: rerun with --debug)"
        )
    ]
    proc = gpu_home.run("--debug", "generate", "x", "--backend", "flow", "--seed", "2")
    assert proc.returncode == 4
    assert "Traceback" in proc.stderr
    tail = proc.stderr[proc.stderr.rindex("imagen: backend") :]
    assert "\n full_output_folder: " in tail
    assert "\n         commonpath: " in tail


# -- 4. --size where the workflow has no size input --------------------------------------------


def test_size_on_a_workflow_without_a_size_input_is_warned_about(gpu_home, comfy):
    _workflow(gpu_home.cwd, "dalle3_api.json")
    gpu_home.write_config(
        f"backends:\n  dalle:\n    type: comfyui\n    base_url: {comfy.url}\n"
        "    workflow: dalle3_api.json\n    inputs:\n      prompt: DALL-E 3.prompt\n"
    )
    proc = gpu_home.run("generate", "x", "--backend", "dalle", "--size", "512x512", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == 'imagen: backend "dalle" ignored: width, height\n'
    proc = gpu_home.run("generate", "x", "--backend", "dalle", "--seed", "1")
    assert proc.stderr == ""  # nothing asked for, nothing to warn about


# -- 5. every seed input, sampler or not --------------------------------------------------------


def test_every_seed_input_gets_the_seed_without_a_sampler(comfy, make_backend, tmp_path):
    name = _workflow(tmp_path, "dalle3_api.json")
    backend = make_backend(workflow=name, inputs={"prompt": "DALL-E 3.prompt"})
    result = backend.generate(Request("a teacup", seed=1234), RecordingContext())
    assert comfy.received[-1]["prompt"]["1"]["inputs"]["seed"] == 1234
    assert result.metadata["inputs"] == {"1.prompt": "a teacup", "1.seed": 1234}

    # The node takes seeds up to 2^31-1 only: a larger one is brought into its range the
    # same way every time, instead of failing validation for half of imagen's seeds.
    big = 3_000_000_000
    result = backend.generate(Request("a teacup", seed=big), RecordingContext())
    assert comfy.received[-1]["prompt"]["1"]["inputs"]["seed"] == big % 2**31
    assert result.metadata["inputs"]["1.seed"] == big % 2**31
    assert result.metadata["seed"] == big


# -- 6. a second Ctrl-C ------------------------------------------------------------------------


def test_a_keyboard_interrupt_still_interrupts_the_run_on_the_server(comfy, make_backend):
    comfy.slow_next(30)

    def stop_at_once(progress) -> None:
        if progress.kind == "step":
            raise KeyboardInterrupt  # what a second Ctrl-C raises, wherever imagen is

    context = Context(on_progress=stop_at_once)
    with pytest.raises(KeyboardInterrupt):
        make_backend().generate(Request("x", seed=1, steps=30), context)
    prompt_id = context.run_id
    assert {"prompt_id": prompt_id} in comfy.interrupts
    assert comfy.wait_until(lambda: prompt_id in comfy.history)
    messages = [kind for kind, _ in comfy.history[prompt_id]["status"]["messages"]]
    assert "execution_interrupted" in messages


def test_a_second_ctrl_c_does_not_exit_before_the_interrupt_is_sent(gpu_home, comfy):
    # A long node that sends nothing (a model loading): imagen notices the first Ctrl-C at
    # its next check, up to half a second later; the second comes before that, mostly.
    # Whichever comes first, the run must be interrupted on the server and imagen exit 130.
    comfy.slow_next(3.0, node_class="CheckpointLoaderSimple")
    proc = subprocess.Popen(
        [sys.executable, "-m", "imagen", "generate", "x", "--backend", "gpu"],
        cwd=gpu_home.cwd,
        env=gpu_home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert comfy.wait_until(lambda: comfy.executing == "4", 60)  # in the checkpoint loader
    proc.send_signal(signal.SIGINT)
    threading.Event().wait(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.startswith("imagen: cancelling… (Ctrl-C again to stop at once)\n")
    prompt_id = comfy.received[-1]["prompt_id"]
    assert {"prompt_id": prompt_id} in comfy.interrupts  # sent before imagen exited
    assert "Traceback" not in stderr


# -- 7. texts -----------------------------------------------------------------------------------


def test_rejections_read_cleanly(comfy, make_backend, tmp_path):
    name = _workflow(tmp_path, "sdxl_api.json")
    text = (tmp_path / name).read_text().replace('"VAEDecode"', '"FancyDecode"')
    (tmp_path / name).write_text(text)
    with pytest.raises(PermanentBackendError) as raised:
        make_backend(workflow=name).generate(Request("x", seed=1), Context())
    assert str(raised.value) == (
        "ComfyUI rejected the workflow: Cannot execute because node FancyDecode does not exist "
        "(Node ID '#8')"
    )
    shutil.copy(WORKFLOWS / "ui_format.json", tmp_path / "ui.json")
    with pytest.raises(Exception, match=r'"Export \(API\)"') as raised:
        make_backend(workflow="ui.json")
    assert "Save (API)" not in str(raised.value)


def test_a_detached_run_is_left_going_on_the_server(comfy, make_backend):
    comfy.slow_next(2.0)
    context = RecordingContext()
    thread, outcome = _in_thread(lambda: make_backend().generate(Request("x", seed=1), context))
    assert comfy.wait_until(_steps_began(context))
    context.detach()  # a worker that lost its lease: another one resumes the run
    thread.join(30)
    assert isinstance(outcome.get("error"), Cancelled)
    assert comfy.interrupts == []
    assert comfy.queue_edits == []
    prompt_id = context.run_ids[0]
    assert comfy.wait_until(lambda: prompt_id in comfy.history)
    resumed = make_backend().resume(prompt_id, Request("x", seed=1), RecordingContext())
    assert len(resumed.images) == 1

"""Following runs: progress, cancellation, errors, dropped and silent sockets, restarts, resume."""

from __future__ import annotations

import socket
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from comfy_standin import ComfyStandIn

from imagen import Cancelled, Context, PermanentBackendError, Request, TransientBackendError
from imagen.testing import RecordingContext

WORKFLOWS = Path(__file__).parent / "workflows"


def _occupy(comfy: ComfyStandIn, seconds: float) -> str:
    """Queue a slow run from another client, so the next one waits behind it."""
    comfy.slow_next(seconds)
    graph = {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
        },
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "other", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1,
                "steps": 10,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["6", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "other", "images": ["8", 0]},
        },
    }
    answer = httpx.post(f"{comfy.url}/prompt", json={"prompt": graph, "client_id": "someone-else"})
    assert answer.status_code == 200
    assert comfy.wait_until(lambda: comfy.running is not None)
    return answer.json()["prompt_id"]


def _in_thread(backend, request, context):
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = backend.generate(request, context)
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_progress_reaches_the_callback_in_order(comfy, make_backend):
    _occupy(comfy, 0.6)
    context = RecordingContext()
    result = make_backend().generate(Request("lake", seed=1, steps=6), context)
    assert len(result.images) == 1
    kinds = [event.kind for event in context.events]
    assert kinds[0] == "queued"
    assert context.events[0].current == 1  # one run ahead of ours
    assert kinds.index("started") > kinds.index("queued")
    steps = [(e.current, e.total, e.message) for e in context.events if e.kind == "step"]
    assert steps == [(n, 6, "KSampler") for n in range(1, 7)]
    statuses = [e.message for e in context.events if e.kind == "status"]
    assert "Positive Prompt" in statuses
    assert "Save Image" in statuses
    assert "Load Checkpoint" not in statuses  # cached: the run before loaded the same file
    assert kinds[-1] == "finished"
    assert context.run_ids == [comfy.received[-1]["prompt_id"]]
    assert comfy.received[-1]["client_id"] == comfy.received[-1]["prompt_id"]


def test_cancel_while_pending_removes_it_from_the_queue(comfy, make_backend):
    other = _occupy(comfy, 3.0)
    context = RecordingContext()
    thread, outcome = _in_thread(make_backend(), Request("wait", seed=1), context)
    assert context.run_id_reported.wait(10)
    ours = context.run_ids[0]
    assert comfy.wait_until(lambda: any(run.prompt_id == ours for run in comfy.pending))
    context.cancel()
    thread.join(10)
    assert isinstance(outcome.get("error"), Cancelled)
    assert all(run.prompt_id != ours for run in comfy.pending)
    assert comfy.running is not None
    assert comfy.running.prompt_id == other  # left alone
    assert ours not in comfy.history


def test_cancel_while_running_interrupts_it_on_the_server(comfy, make_backend):
    comfy.slow_next(20)
    context = RecordingContext()
    thread, outcome = _in_thread(make_backend(), Request("long", seed=1, steps=40), context)
    assert comfy.wait_until(lambda: any(e.kind == "step" for e in context.events))
    context.cancel()
    thread.join(10)
    assert isinstance(outcome.get("error"), Cancelled)
    prompt_id = context.run_ids[0]
    assert comfy.wait_until(lambda: prompt_id in comfy.history)
    messages = [kind for kind, _ in comfy.history[prompt_id]["status"]["messages"]]
    assert "execution_interrupted" in messages


def test_connection_refused_is_transient_and_names_the_url(make_backend):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = make_backend(base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientBackendError) as raised:
        backend.generate(Request("x"), Context())
    assert str(raised.value).startswith(f"cannot reach ComfyUI at http://127.0.0.1:{port}")


def test_dns_failure_is_transient(make_backend):
    backend = make_backend(base_url="http://no-such-comfyui-host.invalid:8188", connect_timeout_s=3)
    with pytest.raises(
        TransientBackendError,
        match=r"cannot reach ComfyUI at http://no-such-comfyui-host\.invalid:8188",
    ):
        backend.generate(Request("x"), Context())


def test_unknown_model_lists_the_servers_models(comfy, make_backend):
    backend = make_backend(model="sd_xl_turbo.safetensors")
    with pytest.raises(PermanentBackendError) as raised:
        backend.generate(Request("x", seed=1), Context())
    message = str(raised.value)
    assert message.startswith("ComfyUI rejected the workflow: Prompt outputs failed validation; ")
    assert (
        "node 4 (CheckpointLoaderSimple \"Load Checkpoint\"): ckpt_name: 'sd_xl_turbo.safetensors' is "
        "not on the server; it has: sd_xl_base_1.0.safetensors, v1-5-pruned-emaonly.safetensors"
    ) in message
    assert comfy.pending == []  # nothing was queued


def test_out_of_range_and_unknown_nodes_are_named(comfy, make_backend, tmp_path):
    text = (WORKFLOWS / "sdxl_api.json").read_text()
    (tmp_path / "huge.json").write_text(text.replace('"width": 512', '"width": 99999'))
    with pytest.raises(PermanentBackendError) as raised:
        make_backend(workflow="huge.json").generate(Request("x", seed=1), Context())
    assert (
        'node 5 (EmptyLatentImage "Empty Latent Image"): width: Value 99999 bigger than max of 16384'
        in str(raised.value)
    )
    (tmp_path / "custom.json").write_text(text.replace('"VAEDecode"', '"FancyDecode"'))
    with pytest.raises(PermanentBackendError) as raised:
        make_backend(workflow="custom.json").generate(Request("x", seed=1), Context())
    assert "Cannot execute because node FancyDecode does not exist (Node ID '#8')" in str(
        raised.value
    )


def test_execution_error_names_node_and_exception(comfy, make_backend):
    comfy.fail_next("permanent")
    with pytest.raises(PermanentBackendError) as raised:
        make_backend().generate(Request("x", seed=1), Context())
    assert str(raised.value) == (
        'ComfyUI failed in node 3 (KSampler "KSampler"): RuntimeError: CUDA error: an illegal '
        "memory access was encountered"
    )


def test_a_run_with_no_image_output_fails_clearly(comfy, make_backend, tmp_path):
    (tmp_path / "latent.json").write_text((WORKFLOWS / "latent_only.json").read_text())
    backend = make_backend(workflow="latent.json")
    with pytest.raises(PermanentBackendError, match="finished without an image output"):
        backend.generate(Request("x", seed=1), Context())


def test_a_run_silent_for_too_long_times_out(comfy, make_backend):
    comfy.slow_next(60)
    comfy.silent = True
    backend = make_backend(silence_s=0.2, idle_timeout_s=1.0)
    context = RecordingContext()
    with pytest.raises(
        TransientBackendError, match=r"showed no progress for \d+ s \(idle_timeout_s is 1\)"
    ):
        backend.generate(Request("stuck", seed=1), context)


def test_a_long_run_that_keeps_reporting_is_never_cut_off(comfy, make_backend):
    comfy.slow_next(2.5)
    backend = make_backend(idle_timeout_s=1.0)  # shorter than the run, longer than a step
    result = backend.generate(Request("slow but alive", seed=1, steps=25), RecordingContext())
    assert len(result.images) == 1


def test_a_dropped_socket_reconnects_and_the_run_completes(comfy, make_backend):
    comfy.slow_next(1.5)
    context = RecordingContext()
    thread, outcome = _in_thread(
        make_backend(silence_s=5), Request("drop", seed=1, steps=10), context
    )
    assert comfy.wait_until(lambda: any(e.kind == "step" for e in context.events))
    comfy.drop_sockets()
    thread.join(30)
    assert "result" in outcome, outcome.get("error")
    assert len(outcome["result"].images) == 1
    steps = [e.current for e in context.events if e.kind == "step"]
    assert steps == sorted(steps)
    assert len(comfy.received) == 1  # followed, never resubmitted


def test_a_silent_socket_falls_back_to_history(comfy, make_backend):
    comfy.silent = True  # the socket stays open but nothing arrives on it
    result = make_backend(silence_s=0.3).generate(Request("quiet", seed=1), RecordingContext())
    assert len(result.images) == 1


def test_a_restart_mid_run_reports_the_run_lost(comfy, make_backend):
    comfy.slow_next(10)
    context = RecordingContext()
    thread, outcome = _in_thread(make_backend(silence_s=0.5), Request("doomed", seed=1), context)
    assert comfy.wait_until(lambda: any(e.kind == "step" for e in context.events))
    comfy.restart()
    thread.join(30)
    error = outcome.get("error")
    assert isinstance(error, PermanentBackendError), error
    assert "was lost: ComfyUI has it neither queued, running nor in its history" in str(error)
    assert error.upstream_id == context.run_ids[0]


def test_resume_finished_running_and_lost(comfy, make_backend):
    first = make_backend()
    context = RecordingContext()
    first.generate(Request("kept", seed=4, count=2), context)
    finished = make_backend().resume(
        context.run_ids[0], Request("kept", seed=4, count=2), RecordingContext()
    )
    assert len(finished.images) == 2
    assert len(comfy.received) == 1  # nothing resubmitted

    comfy.slow_next(1.0)
    running_context = RecordingContext()
    thread, _ = _in_thread(first, Request("going", seed=5), running_context)
    assert running_context.run_id_reported.wait(10)
    follower_context = RecordingContext()
    resumed = make_backend().resume(
        running_context.run_ids[0], Request("going", seed=5), follower_context
    )
    thread.join(30)
    assert len(resumed.images) == 1
    assert any(e.kind == "step" for e in follower_context.events)  # it hears the run's events

    with pytest.raises(PermanentBackendError, match="was lost"):
        make_backend().resume(str(uuid.uuid4()), Request("never seen"), RecordingContext())

    comfy.slow_next(10)
    doomed = RecordingContext()
    thread, _ = _in_thread(first, Request("doomed", seed=6), doomed)
    assert comfy.wait_until(lambda: any(e.kind == "step" for e in doomed.events))
    comfy.restart()
    with pytest.raises(PermanentBackendError, match="was lost"):
        make_backend().resume(doomed.run_ids[0], Request("doomed", seed=6), RecordingContext())
    thread.join(30)


def test_images_keep_comfyuis_own_png_chunks_and_previews_are_not_outputs(comfy, make_backend):
    result = make_backend().generate(
        Request("chunks", seed=8, steps=8, count=3), RecordingContext()
    )
    datas = [image.stream.read() for image in result.images]
    assert len(datas) == 3  # binary preview frames were sent, none became an output
    assert all(b"tEXtprompt" in data for data in datas)


def test_metadata(comfy, make_backend):
    backend = make_backend(price_per_image=0.01, price_per_second=0.001)
    result = backend.generate(Request("meta", seed=3, options={"cfg": 2}), RecordingContext())
    metadata = result.metadata
    assert metadata["prompt_id"] == comfy.received[-1]["prompt_id"]
    assert metadata["comfyui_version"] == "0.3.64"
    assert metadata["model"] == "sd_xl_base_1.0.safetensors"
    assert metadata["sampler"] == "euler"
    assert metadata["inputs"]["3.seed"] == 3
    assert metadata["timings"]["execution_s"] >= 0
    assert metadata["timings"]["queue_s"] >= 0
    assert metadata["cost_usd"] >= 0.01
    assert metadata["ignored"] == ["options.cfg"]
    assert backend.estimate_cost(Request("x", count=2)) == 0.02  # the per-second part comes after
    assert make_backend().estimate_cost(Request("x")) == 0  # no price: one's own GPU, free
    assert make_backend(price_per_second=0.001).estimate_cost(Request("x")) is None  # known after


def test_a_reverse_proxy_token_and_headers_are_sent(make_backend):
    with ComfyStandIn(token="proxy-secret-token") as guarded:
        backend = make_backend(
            base_url=guarded.url,
            token_env="COMFY_PROXY_TOKEN",
            headers={"X-Team": "art"},
            environ={"COMFY_PROXY_TOKEN": "proxy-secret-token"},
        )
        assert len(backend.generate(Request("x", seed=1), Context()).images) == 1
        refused = make_backend(base_url=guarded.url)
        with pytest.raises(
            PermanentBackendError,
            match=r"refused the websocket \(401\): check `headers` and `token_env`",
        ):
            refused.generate(Request("x", seed=1), Context())


def test_a_stalled_submission_times_out_as_transient(comfy, make_backend):
    comfy.stall_prompt_s = 3.0
    backend = make_backend(http_timeout_s=0.5, retry_attempts=2)
    with pytest.raises(
        TransientBackendError,
        match=r"did not answer POST /prompt in time \(gave up after 2 attempts\)",
    ):
        backend.generate(Request("x", seed=1), Context())
    assert len(comfy.received) == 2  # not queued the first time: safe to submit again


def test_a_503_is_retried_by_the_shared_policy(comfy, make_backend):
    comfy.fail_next("transient", times=1)
    result = make_backend().generate(Request("x", seed=1), Context())
    assert len(result.images) == 1
    assert len(comfy.received) == 2


def test_a_lost_answer_to_a_queued_submission_is_not_submitted_twice(comfy, make_backend):
    comfy.late_answer_s = 3.0  # the run is queued, but its answer comes too late
    backend = make_backend(http_timeout_s=0.5)
    result = backend.generate(Request("paid once", seed=1), RecordingContext())
    assert len(result.images) == 1
    assert len(comfy.received) == 1

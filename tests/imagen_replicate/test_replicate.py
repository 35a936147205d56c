"""The Replicate adapter through the real replicate SDK: families, outputs, errors, retries, cost."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from replicate_standin import SDXL_VERSION, TOKEN

from imagen import (
    Cancelled,
    ConfigError,
    Context,
    PermanentBackendError,
    PossiblyBilledError,
    Request,
    TransientBackendError,
)
from imagen.testing import RecordingContext


def _read(result) -> list[bytes]:
    return [image.stream.read() for image in result.images]


def test_flux_schnell_maps_size_to_the_nearest_aspect_ratio(replicate_api, make_backend):
    result = make_backend().generate(
        Request("fox", width=1920, height=1080, seed=3, steps=4, count=2), Context()
    )
    sent = replicate_api.received[-1]
    assert sent["model"] == "black-forest-labs/flux-schnell"
    assert sent["input"] == {
        "prompt": "fox",
        "seed": 3,
        "num_inference_steps": 4,
        "aspect_ratio": "16:9",
        "num_outputs": 2,
    }
    assert len(_read(result)) == 2
    assert result.metadata["size"] == "1920x1080 asked: aspect ratio 16:9 sent"
    assert result.metadata["cost_usd"] == 0.006


def test_counts_beyond_one_prediction_are_split(replicate_api, make_backend):
    context = RecordingContext()
    result = make_backend().generate(Request("bees", seed=10, count=6), context)
    inputs = [item["input"] for item in replicate_api.received]
    assert [(i["num_outputs"], i["seed"]) for i in inputs] == [(4, 10), (2, 14)]
    assert len(result.images) == 6
    ids = context.run_ids[-1].split(",")
    assert len(ids) == 2
    assert result.metadata["prediction_id"] == context.run_ids[-1]


def test_flux_pro_custom_size_and_single_output(replicate_api, make_backend):
    backend = make_backend(model="black-forest-labs/flux-1.1-pro")
    result = backend.generate(Request("city", width=1000, height=700, seed=1, count=2), Context())
    inputs = [item["input"] for item in replicate_api.received]
    assert len(inputs) == 2  # one image per prediction
    assert inputs[0]["aspect_ratio"] == "custom"
    assert (inputs[0]["width"], inputs[0]["height"]) == (992, 704)
    assert "num_outputs" not in inputs[0]
    assert len(_read(result)) == 2  # the single-URL output shape
    assert result.metadata["cost_usd"] == 0.08
    with pytest.raises(PermanentBackendError, match="takes widths and heights from 256 to 1440"):
        backend.generate(Request("huge", width=4000, height=4000), Context())


def test_sdxl_by_version_with_negative_prompt_and_sizes(replicate_api, make_backend):
    backend = make_backend(
        model=f"stability-ai/sdxl:{SDXL_VERSION}",
        price_per_second=0.001,
        input={"scheduler": "K_EULER", "output_format": "png"},
    )
    result = backend.generate(
        Request("dog", negative_prompt="blur", width=640, height=384, steps=20, seed=5), Context()
    )
    sent = replicate_api.received[-1]
    assert sent["version"] == SDXL_VERSION
    assert sent["input"] == {
        "scheduler": "K_EULER",
        "output_format": "png",
        "prompt": "dog",
        "negative_prompt": "blur",
        "seed": 5,
        "num_inference_steps": 20,
        "width": 640,
        "height": 384,
        "num_outputs": 1,
    }
    image = Image.open(io.BytesIO(_read(result)[0]))
    assert image.size == (640, 384)
    assert "ignored" not in result.metadata
    assert result.metadata["cost_usd"] == pytest.approx(0.001 * result.metadata["predict_time_s"])
    assert result.metadata["version"] == SDXL_VERSION


def test_input_names_can_be_overridden_and_options_pass_through(replicate_api, make_backend):
    # A model imagen has no input list for: any name is taken (a known model's are checked).
    backend = make_backend(
        model="acme/flux-schnell-lora",
        family="sdxl",
        inputs={"steps": "steps", "negative_prompt": None},
    )
    result = backend.generate(
        Request("x", negative_prompt="n", steps=9, options={"guidance": 3.5}), Context()
    )
    sent = replicate_api.received[-1]["input"]
    assert sent["steps"] == 9
    assert sent["guidance"] == 3.5
    assert "negative_prompt" not in sent
    assert result.metadata["ignored"] == ["negative_prompt"]


def test_data_uri_outputs(replicate_api, make_backend):
    replicate_api.data_uris = True
    result = make_backend().generate(Request("x", seed=2), Context())
    assert Image.open(io.BytesIO(_read(result)[0])).format == "PNG"
    assert replicate_api.file_requests == []  # decoded locally


def test_the_token_never_reaches_the_file_host(replicate_api, make_backend):
    _read(make_backend().generate(Request("x", count=3), Context()))
    assert len(replicate_api.file_requests) == 3
    assert all(request["authorization"] is None for request in replicate_api.file_requests)


def test_an_unknown_model_has_no_cost(replicate_api, make_backend):
    backend = make_backend(model=f"stability-ai/sdxl:{SDXL_VERSION}")
    result = backend.generate(Request("x"), Context())
    assert "cost_usd" not in result.metadata  # no price is known: none is guessed
    assert backend.estimate_cost(Request("x", count=3)) is None


def test_estimates_use_the_per_image_price(replicate_api, make_backend):
    assert make_backend().estimate_cost(Request("x", count=4)) == pytest.approx(0.012)
    per_second = make_backend(price_per_second=0.001)
    assert per_second.estimate_cost(Request("x")) is None  # known only after the run


def test_missing_and_rejected_tokens(replicate_api, make_backend):
    with pytest.raises(ConfigError, match="environment variable REPLICATE_API_TOKEN is not set"):
        make_backend(environ={})
    backend = make_backend(environ={"MY_TOKEN": "r8_wrong"}, token_env="MY_TOKEN")
    with pytest.raises(PermanentBackendError) as raised:
        backend.generate(Request("x"), Context())
    assert str(raised.value) == (
        "Replicate refused the token in MY_TOKEN (401): You did not pass a "
        "valid authentication token"
    )
    assert "r8_wrong" not in str(raised.value)


def test_invalid_input_gives_the_apis_detail(replicate_api, make_backend):
    with pytest.raises(PermanentBackendError) as raised:
        make_backend().generate(Request("x", steps=30), Context())
    assert str(raised.value) == (
        "Replicate rejected the input (422): - input.num_inference_steps: "
        "Must be less than or equal to 4"
    )
    assert replicate_api.count("POST", "/v1/models") == 1  # a 422 is never retried


def test_unknown_model(replicate_api, make_backend):
    with pytest.raises(PermanentBackendError, match="Replicate has no model acme/nothing"):
        make_backend(model="acme/nothing").generate(Request("x"), Context())


def test_a_failed_prediction_gives_its_error(replicate_api, make_backend):
    replicate_api.fail_next("permanent")
    with pytest.raises(PermanentBackendError) as raised:
        make_backend().generate(Request("x"), Context())
    assert raised.value.upstream_id is not None
    assert "failed: NSFW content detected" in str(raised.value)


def test_aborted_is_handled_although_the_sdk_rejects_it(replicate_api, make_backend):
    replicate_api.abort_next()
    replicate_api.slow_next(0.0)
    with pytest.raises(TransientBackendError, match="was aborted before it started"):
        make_backend().generate(Request("x"), Context())


def test_a_429_with_retry_after_then_success(replicate_api, make_backend):
    replicate_api.fail_gets(429, 1, {"Retry-After": "1"})
    started = time.monotonic()
    result = make_backend().generate(Request("x"), Context())
    assert len(result.images) == 1
    assert time.monotonic() - started >= 1.0  # waited as asked


def test_a_429_on_create_is_retried_with_the_wait_the_api_named(replicate_api, make_backend):
    replicate_api.fail_create(429, "Request was throttled. Expected available in 1 second.")
    started = time.monotonic()
    make_backend().generate(Request("x"), Context())
    assert time.monotonic() - started >= 1.0
    assert replicate_api.count("POST", "/v1/models") == 2


def test_a_5xx_storm_exhausts_the_policy_and_the_sdk_does_not_multiply_it(
    replicate_api, make_backend
):
    replicate_api.fail_gets(503, 100)
    backend = make_backend(retry_attempts=3, retry_max_s=30)
    with pytest.raises(
        TransientBackendError, match=r"Replicate answered 503.*\(gave up after 3 attempts\)"
    ):
        backend.generate(Request("x"), Context())
    # Three attempts of ours, one request each: the SDK's own 10 retries are off.
    assert replicate_api.count("GET", "/v1/predictions/") == 3


def test_a_timeout_after_the_create_was_sent_is_not_retried(replicate_api, make_backend):
    replicate_api.stall_create_s = 2.0
    backend = make_backend(http_timeout_s=0.5)
    with pytest.raises(PossiblyBilledError) as raised:
        backend.generate(Request("x"), Context())
    assert "creating the prediction failed after the request was sent" in str(raised.value)
    assert "may have run it (and billed it, on a paid service)" in str(raised.value)
    assert replicate_api.count("POST", "/v1/models") == 1


def test_cancelling_a_running_prediction_cancels_it_upstream(replicate_api, make_backend):
    replicate_api.slow_next(30)
    context = RecordingContext()
    outcome: dict = {}

    def run():
        try:
            make_backend().generate(Request("slow"), context)
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert context.first_event.wait(10)
    context.cancel()
    thread.join(10)
    assert isinstance(outcome.get("error"), Cancelled)
    prediction = next(iter(replicate_api.predictions.values()))
    assert prediction.canceled


def test_progress_follows_status_and_log_steps(replicate_api, make_backend):
    replicate_api.slow_next(1.0)
    context = RecordingContext()
    make_backend().generate(Request("x"), context)
    kinds = [event.kind for event in context.events]
    assert kinds[0] == "queued"
    assert "started" in kinds
    steps = [event.current for event in context.events if event.kind == "step"]
    assert steps == sorted(steps)
    assert steps
    assert kinds[-1] == "finished"


def test_resume_a_prediction_and_a_split_run(replicate_api, make_backend):
    context = RecordingContext()
    first = make_backend().generate(Request("x", seed=1, count=5), context)
    resumed = make_backend().resume(
        context.run_ids[-1], Request("x", seed=1, count=5), RecordingContext()
    )
    assert _read(resumed) == _read(first)
    assert replicate_api.count("POST", "/v1/models") == 2  # nothing created again


def test_metadata(replicate_api, make_backend):
    result = make_backend().generate(Request("meta", seed=4), Context())
    metadata = result.metadata
    assert metadata["model"] == "black-forest-labs/flux-schnell"
    assert metadata["version"].startswith("dp-")
    assert metadata["predict_time_s"] > 0
    assert "100%" in metadata["logs"]
    assert metadata["input"]["prompt"] == "meta"


def test_generate_end_to_end(home, replicate_api):
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
    proc = home.run(
        "generate", "a fox in snow", "--backend", "flux", "-n", "2", "--json", check=True
    )
    result = json.loads(proc.stdout)
    assert len(result["images"]) == 2
    record = json.loads(Path(result["images"][0]["sidecar"]).read_text())
    assert record["backend_type"] == "replicate"
    assert record["metadata"]["cost_usd"] == 0.006
    assert record["reproducible"] is False
    assert TOKEN not in Path(result["images"][0]["sidecar"]).read_text()


def test_a_split_run_reports_one_ordered_progress(replicate_api, make_backend):
    replicate_api.slow_next(1.0)  # "queued" comes with the create; polls see it processing
    context = RecordingContext()
    make_backend().generate(Request("x", count=6), context)
    kinds = [event.kind for event in context.events if event.kind != "step"]
    assert kinds == ["queued", "started", "downloading", "finished"]
    last: dict[str, int] = {}
    for event in context.events:
        if event.kind == "step":
            assert event.message in ("prediction 1/2", "prediction 2/2")
            assert event.current >= last.get(event.message, 0)
            last[event.message] = event.current


def test_a_token_the_service_refuses_exits_3_like_any_credential(home, replicate_api):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-replicate"
    home.env["REPLICATE_API_TOKEN"] = "r8_revoked_token"
    home.write_config(
        f"""
        backends:
          flux:
            type: replicate
            model: black-forest-labs/flux-schnell
            base_url: {replicate_api.url}
        """
    )
    proc = home.run("generate", "a fox in snow", "--backend", "flux")
    assert proc.returncode == 3  # docs/cli.md: a credential; not 4, a failed generation
    assert proc.stderr.strip().startswith(
        'imagen: backend "flux": Replicate refused the token in REPLICATE_API_TOKEN (401)'
    )
    assert "r8_revoked_token" not in proc.stderr


def test_options_of_a_known_model_are_checked_others_pass_through(home, replicate_api):
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
          mine:
            type: replicate
            model: acme/flux-schnell-lora
            family: flux-schnell
            base_url: {replicate_api.url}
            poll_interval_s: 0.05
        """
    )
    proc = home.run("generate", "a fox", "-b", "flux", "--opt", "output_fromat=png")
    assert proc.returncode == 2
    assert 'no option "output_fromat" (did you mean "output_format"?' in proc.stderr
    assert replicate_api.received == []
    home.run("generate", "a fox", "-b", "flux", "--opt", "output_format=png", check=True)
    assert replicate_api.received[-1]["input"]["output_format"] == "png"
    # A model imagen has no input list for takes options as they are.
    home.run("generate", "a fox", "-b", "mine", "--opt", "lora_weights=x", check=True)
    assert replicate_api.received[-1]["input"]["lora_weights"] == "x"


def _online_home(home, replicate_api, token=TOKEN):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-replicate"
    home.env["REPLICATE_API_TOKEN"] = token
    home.write_config(
        f"""
        backends:
          flux:
            type: replicate
            model: black-forest-labs/flux-schnell
            base_url: {replicate_api.url}
          sdxl:
            type: replicate
            model: stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc
            base_url: {replicate_api.url}
        """
    )
    return home


def test_config_check_online_reads_the_account_and_the_models(home, replicate_api):
    proc = _online_home(home, replicate_api).run("config", "check", "--online", check=True)
    assert (
        "  ok    flux (replicate): the token in REPLICATE_API_TOKEN is accepted (signed in as "
        "loopback); black-forest-labs/flux-schnell is there (1234 runs)"
    ) in proc.stdout
    assert "  ok    sdxl (replicate): the token in REPLICATE_API_TOKEN is accepted" in proc.stdout
    assert replicate_api.count("POST", "/") == 0  # no prediction: nothing billed


def test_config_check_online_names_a_refused_token(home, replicate_api):
    proc = _online_home(home, replicate_api, token="r8_revoked").run("config", "check", "--online")
    assert proc.returncode == 3
    assert (
        "  FAIL  flux (replicate): Replicate refused the token in REPLICATE_API_TOKEN (401)"
        in proc.stdout
    )
    assert "r8_revoked" not in proc.stdout + proc.stderr


def test_models_lists_versions_or_says_the_model_is_official(home, replicate_api):
    listed = json.loads(
        _online_home(home, replicate_api).run("models", "--json", check=True).stdout
    )["backends"]
    (flux,) = listed["flux"]
    assert (flux["name"], flux["current"]) == ("black-forest-labs/flux-schnell", True)
    assert flux["description"].startswith("official model: no versions to choose")
    versions = listed["sdxl"]
    assert [v["kind"] for v in versions] == ["version", "version"]
    assert versions[0]["current"] is True
    assert versions[0]["name"].startswith("stability-ai/sdxl:7762fd07")
    assert versions[1]["current"] is False

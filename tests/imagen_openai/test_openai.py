"""The OpenAI adapter through the real openai SDK: sizes, n, decoding, errors, retries, cost."""

from __future__ import annotations

import base64
import io
import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest
from openai_standin import KEY
from PIL import Image

from imagen import (
    Cancelled,
    ConfigError,
    Context,
    PermanentBackendError,
    PossiblyBilledError,
    Request,
    TransientBackendError,
)
from imagen.output import write_image
from imagen.testing import RecordingContext


def _read(result) -> list[bytes]:
    return [image.stream.read() for image in result.images]


def test_fixed_sizes_for_the_1x_family(openai_api, make_backend):
    backend = make_backend(model="gpt-image-1.5", quality="low", output_format="webp")
    result = backend.generate(Request("fox", width=1536, height=1024), Context())
    body = openai_api.received[-1]["body"]
    assert body == {
        "model": "gpt-image-1.5",
        "prompt": "fox",
        "n": 1,
        "output_format": "webp",
        "quality": "low",
        "size": "1536x1024",
    }
    assert Image.open(io.BytesIO(_read(result)[0])).format == "WEBP"
    with pytest.raises(PermanentBackendError) as raised:
        backend.generate(Request("fox", width=1000, height=700), Context())
    assert (
        str(raised.value)
        == "gpt-image-1.5 makes 1024x1024, 1536x1024, 1024x1536 only, not 1000x700"
    )
    backend.generate(Request("fox"), Context())
    assert "size" not in openai_api.received[-1]["body"]  # the model chooses


def test_free_sizes_for_the_2x_family(openai_api, make_backend):
    backend = make_backend(model="gpt-image-2")
    backend.generate(Request("wide", width=1536, height=864), Context())
    assert openai_api.received[-1]["body"]["size"] == "1536x864"
    for width, height, problem in (
        (1000, 1000, "multiples of 16"),
        (3840, 3840, "at most 3840x2160"),
        (2048, 512, "between 1:3 and 3:1"),
    ):
        with pytest.raises(PermanentBackendError, match=problem):
            backend.generate(Request("x", width=width, height=height), Context())


def test_n_up_to_the_limit_in_one_call(openai_api, make_backend):
    result = make_backend().generate(Request("many", count=12), Context())
    assert [item["body"]["n"] for item in openai_api.received] == [10, 2]
    assert len(result.images) == 12


def test_ignored_fields_revised_prompt_and_seed_note(openai_api, make_backend):
    openai_api.revised_prompt = "A detailed photograph of a fox"
    result = make_backend().generate(
        Request(
            "fox", negative_prompt="blur", steps=20, seed=5, options={"cfg": 2, "quality": "high"}
        ),
        Context(),
    )
    assert result.metadata["ignored"] == ["negative_prompt", "steps", "seed", "options.cfg"]
    assert openai_api.received[-1]["body"]["quality"] == "high"  # a known option passes through
    assert "takes no seed" in result.metadata["seed_note"]
    assert result.images[0].metadata == {"revised_prompt": "A detailed photograph of a fox"}


def test_base64_is_decoded_without_a_second_copy(openai_api, make_backend, tmp_path):
    pixels = Image.frombytes("RGB", (1500, 1500), os.urandom(1500 * 1500 * 3))
    out = io.BytesIO()
    pixels.save(out, "PNG", compress_level=0)
    openai_api.big_b64 = base64.b64encode(out.getvalue()).decode()
    size_mb = len(out.getvalue()) / 2**20
    result = make_backend().generate(Request("big"), Context())
    image = result.images[0]
    tracemalloc.start()
    saved = write_image(
        image.stream, image.mime_type, tmp_path / "big.png", lambda w, h, m: {"w": w}
    )
    peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert saved.record["w"] == 1500
    assert peak_mb < size_mb / 4, f"decoding held {peak_mb:.1f} MB for a {size_mb:.1f} MB image"


def test_missing_and_rejected_keys(openai_api, make_backend):
    with pytest.raises(ConfigError, match="environment variable OPENAI_API_KEY is not set"):
        make_backend(environ={})
    backend = make_backend(environ={"TEAM_KEY": "sk-wrong-key-123456"}, api_key_env="TEAM_KEY")
    with pytest.raises(PermanentBackendError) as raised:
        backend.generate(Request("x"), Context())
    assert str(raised.value).startswith(
        "OpenAI refused the key in TEAM_KEY (401): Incorrect API key"
    )
    assert "sk-wrong-key-123456" not in str(raised.value)


def test_moderation_is_not_retried(openai_api, make_backend):
    with pytest.raises(PermanentBackendError) as raised:
        make_backend().generate(Request("something forbidden"), Context())
    assert str(raised.value).startswith(
        "OpenAI's safety system rejected the request: Your request was "
        "rejected by the safety system."
    )
    assert len(openai_api.received) == 1


def test_retired_and_unknown_models_are_config_errors(make_backend):
    with pytest.raises(
        ConfigError, match=r"dall-e-3 was retired on 2026-05-12; use gpt-image-1\.5"
    ):
        make_backend(model="dall-e-3")
    with pytest.raises(ConfigError, match="gpt-image-1 was shut down on 2026-10-23"):
        make_backend(model="gpt-image-1")
    with pytest.raises(ConfigError, match=r"unknown image model 'gpt-5' \(current: gpt-image-1.5"):
        make_backend(model="gpt-5")


def test_a_compatible_servers_own_models_and_sizes_are_its_own(make_backend):
    """Names outside OpenAI's are the base_url server's: taken as they are, sizes too."""
    theirs = make_backend(model="flux-schnell")
    assert theirs._params(Request("fox", width=48, height=32))["size"] == "48x32"
    assert theirs.estimate_cost(Request("fox")) is None  # no price known for it here
    ours = make_backend(model="gpt-image-1.5")
    with pytest.raises(PermanentBackendError, match="makes 1024x1024, 1536x1024, 1024x1536"):
        ours._params(Request("fox", width=48, height=32))
    with pytest.raises(ConfigError, match="another server's model needs its base_url"):
        make_backend(model="flux-schnell", base_url=None)


def test_a_429_with_retry_after_then_success(openai_api, make_backend):
    openai_api.fail_with(
        429,
        "requests",
        "Rate limit reached for images per minute.",
        code="rate_limit_exceeded",
        headers={"retry-after": "1"},
    )
    started = time.monotonic()
    result = make_backend().generate(Request("x"), Context())
    assert len(result.images) == 1
    assert time.monotonic() - started >= 1.0
    assert len(openai_api.received) == 2
    # The SDK made one attempt per call of ours: its own retries are off.
    assert {item["headers"]["x-stainless-retry-count"] for item in openai_api.received} == {"0"}


def test_a_5xx_storm_exhausts_the_policy(openai_api, make_backend):
    openai_api.fail_next("transient", times=100)
    with pytest.raises(
        TransientBackendError, match=r"OpenAI answered 503: .*\(gave up after 3 attempts\)"
    ):
        make_backend(retry_attempts=3).generate(Request("x"), Context())
    assert len(openai_api.received) == 3


def test_a_timeout_after_sending_is_not_retried(openai_api, make_backend):
    openai_api.stall_s = 2.0
    with pytest.raises(
        PossiblyBilledError, match=r"may have run it \(and billed it, on a paid service\)"
    ):
        make_backend(timeout_s=0.5).generate(Request("x"), Context())
    assert len(openai_api.received) == 1


def test_a_200_that_is_not_json_is_a_clear_error(openai_api, make_backend):
    openai_api.not_json_next()
    with pytest.raises(
        PossiblyBilledError, match="OpenAI answered 200 with a body that is not JSON"
    ):
        make_backend().generate(Request("x"), Context())


def test_cancellation_returns_at_once(openai_api, make_backend):
    import threading

    openai_api.slow_next(20)
    context = RecordingContext()
    threading.Timer(0.3, context.cancel).start()
    with pytest.raises(
        Cancelled, match=r"cannot be told to stop, so it may still finish \(and bill it\)"
    ):
        make_backend().generate(Request("slow"), context)
    assert openai_api.paused == 1  # returned while OpenAI was still holding the request


def test_cost_from_usage_tokens(openai_api, make_backend):
    result = make_backend(model="gpt-image-1-mini", quality="medium").generate(
        Request("priced", width=1024, height=1024, count=2), Context()
    )
    usage = result.metadata["usage"]
    text = usage["input_tokens_details"]["text_tokens"]
    expected = (text * 2.0 + usage["output_tokens"] * 8.0) / 1_000_000
    assert result.metadata["cost_usd"] == pytest.approx(expected)
    assert usage["output_tokens"] == 2 * 1056


def test_cost_from_the_per_image_table_without_usage(openai_api, make_backend):
    openai_api.with_usage = False
    result = make_backend(model="gpt-image-1.5", quality="high").generate(
        Request("priced", width=1536, height=1024, count=3), Context()
    )
    assert result.metadata["cost_usd"] == pytest.approx(0.6)


def test_no_cost_when_no_price_is_known_and_an_override(openai_api, make_backend):
    result = make_backend(model="gpt-image-2").generate(Request("x"), Context())
    assert "cost_usd" not in result.metadata
    result = make_backend(model="gpt-image-2", price_per_image=0.07).generate(
        Request("x", count=2), Context()
    )
    assert result.metadata["cost_usd"] == pytest.approx(0.14)


def test_organization_and_project_headers(openai_api, make_backend):
    make_backend(organization="org-abc", project="proj_xyz").generate(Request("x"), Context())
    headers = {key.lower(): value for key, value in openai_api.received[-1]["headers"].items()}
    assert headers["openai-organization"] == "org-abc"
    assert headers["openai-project"] == "proj_xyz"


def test_generate_end_to_end(home, openai_api):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-openai"
    home.env["OPENAI_API_KEY"] = KEY
    home.write_config(
        f"backends:\n  gpt:\n    type: openai\n    base_url: {openai_api.api}\n    quality: low\n"
    )
    proc = home.run(
        "generate",
        "a koi pond",
        "--backend",
        "gpt",
        "--size",
        "1024x1536",
        "--seed",
        "3",
        "--json",
        check=True,
    )
    result = json.loads(proc.stdout)
    record = json.loads(Path(result["images"][0]["sidecar"]).read_text())
    assert record["backend_type"] == "openai"
    assert record["metadata"]["size"] == "1024x1536"
    assert record["metadata"]["ignored"] == ["seed"]
    assert record["reproducible"] is False
    assert 'imagen: backend "gpt" ignored: seed' in proc.stderr  # the user asked for one
    assert KEY not in Path(result["images"][0]["sidecar"]).read_text()


def test_estimates_come_from_the_per_image_table(make_backend):
    backend = make_backend(model="gpt-image-1-mini", quality="medium")
    assert backend.estimate_cost(Request("x", width=1024, height=1024, count=2)) == pytest.approx(
        2 * backend.estimate_cost(Request("x", width=1024, height=1024))
    )
    auto = make_backend(model="gpt-image-1-mini").estimate_cost(
        Request("x", width=1024, height=1024)
    )
    high = make_backend(model="gpt-image-1-mini", quality="high").estimate_cost(
        Request("x", width=1024, height=1024)
    )
    assert auto == high == 0.036  # auto quality is priced at the dearest


def test_a_key_the_service_refuses_exits_3_like_any_credential(home, openai_api):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-openai"
    home.env["OPENAI_API_KEY"] = "sk-revoked-key-123456"
    home.write_config(f"backends:\n  gpt:\n    type: openai\n    base_url: {openai_api.api}\n")
    proc = home.run("generate", "a koi pond", "--backend", "gpt")
    assert proc.returncode == 3  # docs/cli.md: a credential; not 4, a failed generation
    assert proc.stderr.strip().startswith(
        'imagen: backend "gpt": OpenAI refused the key in OPENAI_API_KEY (401)'
    )
    assert "sk-revoked-key-123456" not in proc.stderr


def test_a_misspelt_option_never_reaches_openai(home, openai_api):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-openai"
    home.env["OPENAI_API_KEY"] = KEY
    home.write_config(f"backends:\n  gpt:\n    type: openai\n    base_url: {openai_api.api}\n")
    proc = home.run("generate", "a koi pond", "-b", "gpt", "--opt", "qualty=high")
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        'imagen: backend "gpt" has no option "qualty" (did you mean "quality"? known: '
        "background, input_fidelity, moderation, output_compression, output_format, quality)"
    )
    assert openai_api.received == []  # refused before anything was billed
    home.run("generate", "a koi pond", "-b", "gpt", "--opt", "quality=low", check=True)
    assert openai_api.received[0]["body"]["quality"] == "low"


def _gpt_home(home, openai_api, key=KEY, model="gpt-image-1.5"):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-openai"
    home.env["OPENAI_API_KEY"] = key
    home.write_config(
        f"backends:\n  gpt:\n    type: openai\n    base_url: {openai_api.api}\n    model: {model}\n"
    )
    return home


def test_config_check_online_lists_models_and_bills_nothing(home, openai_api):
    proc = _gpt_home(home, openai_api).run("config", "check", "--online", check=True)
    assert (
        "  ok    gpt (openai): the key in OPENAI_API_KEY is accepted; gpt-image-1.5 is listed"
        in proc.stdout
    )
    assert [r.get("get") for r in openai_api.received] == ["/v1/models"]  # no generation


def test_config_check_online_names_a_refused_key(home, openai_api):
    proc = _gpt_home(home, openai_api, key="sk-revoked").run("config", "check", "--online")
    assert proc.returncode == 3
    assert "  FAIL  gpt (openai): OpenAI refused the key in OPENAI_API_KEY (401)" in proc.stdout
    assert "sk-revoked" not in proc.stdout + proc.stderr


def test_models_lists_the_image_models_the_key_may_use(home, openai_api):
    proc = _gpt_home(home, openai_api, model="gpt-image-2").run("models", "--json", check=True)
    listed = json.loads(proc.stdout)["backends"]["gpt"]
    names = [m["name"] for m in listed]
    assert "gpt-4o" not in names  # OpenAI's text models are not image models
    assert set(names) == {
        "chatgpt-image-latest", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2",
        "gpt-image-2.5-flare", "gpt-image-2.5-sunburst",
    }  # fmt: skip
    assert [m["name"] for m in listed if m["current"]] == ["gpt-image-2"]

"""Input images through Replicate: the mapping per family, uploads as the SDK sends them."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import httpx
import pytest
import replicate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from replicate_standin import SDXL_VERSION, TOKEN

from imagen import Context, PermanentBackendError, Request
from imagen.inputs import load_input


def _png(path: Path, size=(96, 64), colour=(10, 200, 30)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def _mask(path: Path, size=(96, 64)) -> Path:
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))
    mask.save(path)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _only_prediction(replicate_api):
    (prediction,) = replicate_api.predictions.values()
    return prediction


@pytest.fixture
def sdk(replicate_api):
    """The real SDK's client, pointed at the stand-in."""
    client = replicate.Client(api_token=TOKEN, base_url=replicate_api.url)
    yield client
    client._client.close()


@pytest.fixture
def photo(tmp_path) -> Path:
    return _png(tmp_path / "photo.png")


@pytest.fixture
def mask(tmp_path) -> Path:
    return _mask(tmp_path / "mask.png")


# -- per family ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["flux-kontext-pro", "flux-kontext-max", "flux-kontext-dev"], ids=str
)
def test_kontext_gets_input_image_and_match_input_image(replicate_api, make_backend, photo, model):
    backend = make_backend(model=f"black-forest-labs/{model}")
    assert backend.input_support().images == 1
    assert not backend.input_support().mask
    assert not backend.input_support().strength
    request = Request("make it blue", seed=7, inputs=(load_input(photo),), strength=0.4)
    result = backend.generate(request, Context())
    sent = replicate_api.received[-1]["input"]
    url = sent.pop("input_image")
    assert sent == {"prompt": "make it blue", "seed": 7, "aspect_ratio": "match_input_image"}
    (file_id,) = replicate_api.uploads
    assert url == replicate_api.uploads[file_id]["urls"]["get"]
    prediction = _only_prediction(replicate_api)
    assert prediction.seen["input_image"]["sha256"] == _sha(photo)  # the bytes arrived
    assert prediction.dropped == []
    assert result.metadata["ignored"] == ["strength"]  # Kontext has no strength
    with Image.open(io.BytesIO(result.images[0].stream.read())) as out:
        assert out.size == (96, 64)  # matched the input image
    (form,) = replicate_api.upload_parts
    assert form == {
        "fields": ["content"],
        "filename": "image.png",  # the role's, never the user's own file name
        "content_type": "image/png",
        "authorization": f"Bearer {TOKEN}",
    }


def test_kontext_with_a_size_sends_the_nearest_ratio(replicate_api, make_backend, photo):
    backend = make_backend(model="black-forest-labs/flux-kontext-pro")
    backend.generate(Request("x", width=2000, height=1000, inputs=(load_input(photo),)), Context())
    assert replicate_api.received[-1]["input"]["aspect_ratio"] == "2:1"


def test_sdxl_takes_image_mask_and_strength_as_prompt_strength(
    replicate_api, make_backend, photo, mask
):
    backend = make_backend(model=f"stability-ai/sdxl:{SDXL_VERSION}")
    support = backend.input_support()
    assert (support.images, support.mask, support.strength) == (1, True, True)
    request = Request(
        "a cat",
        seed=3,
        inputs=(load_input(photo), load_input(mask, "mask")),
        strength=0.35,
    )
    result = backend.generate(request, Context())
    sent = replicate_api.received[-1]["input"]
    assert sent["prompt_strength"] == 0.35
    prediction = _only_prediction(replicate_api)
    assert prediction.seen["image"]["sha256"] == _sha(photo)
    assert prediction.seen["mask"]["sha256"] == _sha(mask)
    assert sent["image"] != sent["mask"]
    assert "ignored" not in result.metadata
    assert [form["filename"] for form in replicate_api.upload_parts] == ["image.png", "mask.png"]


@pytest.mark.parametrize("model", ["flux-fill-pro", "flux-fill-dev"])
def test_flux_fill_takes_image_and_mask(replicate_api, make_backend, photo, mask, model):
    backend = make_backend(model=f"black-forest-labs/{model}")
    request = Request("a hat", steps=20, inputs=(load_input(photo), load_input(mask, "mask")))
    result = backend.generate(request, Context())
    prediction = _only_prediction(replicate_api)
    assert set(prediction.seen) == {"image", "mask"}
    assert prediction.seen["mask"]["sha256"] == _sha(mask)
    assert prediction.dropped == []
    assert prediction.status() != "failed"
    with Image.open(io.BytesIO(result.images[0].stream.read())) as out:
        assert out.size == (96, 64)


def test_flux_redux_takes_a_reference_in_place_of_the_prompt(replicate_api, make_backend, photo):
    backend = make_backend(model="black-forest-labs/flux-redux-dev")
    assert backend.input_support().references == 1
    assert backend.input_support().images == 0
    result = backend.generate(
        Request("ignored words", inputs=(load_input(photo, "reference"),), count=2), Context()
    )
    prediction = _only_prediction(replicate_api)
    assert prediction.seen["redux_image"]["sha256"] == _sha(photo)
    assert "prompt" not in replicate_api.received[-1]["input"]
    assert result.metadata["ignored"] == ["prompt"]
    assert len(result.images) == 2


def test_one_upload_serves_every_prediction_of_a_split_run(replicate_api, make_backend, photo):
    backend = make_backend(model="black-forest-labs/flux-kontext-pro")
    backend.generate(Request("x", seed=1, count=3, inputs=(load_input(photo),)), Context())
    assert len(replicate_api.uploads) == 1
    urls = {item["input"]["input_image"] for item in replicate_api.received}
    assert len(urls) == 1
    assert len(replicate_api.predictions) == 3  # Kontext makes one image per prediction


def test_a_role_without_an_input_is_refused_before_any_http(replicate_api, make_backend, photo):
    backend = make_backend()  # flux-schnell takes no image at all
    assert not backend.input_support().any
    with pytest.raises(PermanentBackendError, match="flux-schnell takes no image input"):
        backend.generate(Request("x", inputs=(load_input(photo),)), Context())
    assert replicate_api.requests == []


def test_base64_file_encoding_sends_data_urls_and_keeps_them_out_of_the_record(
    replicate_api, make_backend, photo
):
    backend = make_backend(model="black-forest-labs/flux-kontext-pro", file_encoding="base64")
    result = backend.generate(Request("x", inputs=(load_input(photo),)), Context())
    assert replicate_api.uploads == {}
    sent = replicate_api.received[-1]["input"]["input_image"]
    assert sent.startswith("data:image/png;base64,")
    assert _only_prediction(replicate_api).seen["input_image"]["sha256"] == _sha(photo)
    recorded = result.metadata["input"]["input_image"]
    assert recorded.startswith("data:image/png;base64,…")
    assert len(recorded) < 100


def test_our_upload_is_the_sdks_own_form(sdk, replicate_api, make_backend, photo):
    """files.create, as replicate 1.0.7 sends a file put in ``input``, against ours."""
    created = sdk.files.create(photo)
    make_backend(model="black-forest-labs/flux-kontext-pro").generate(
        Request("x", inputs=(load_input(photo),)), Context()
    )
    sdk, ours = replicate_api.upload_parts
    assert sdk["fields"] == ours["fields"] == ["content"]
    assert sdk["content_type"] == ours["content_type"] == "image/png"
    assert sdk["filename"] == "photo.png"  # the SDK's is the file's name; ours the role's
    assert created.urls["get"].startswith(f"{replicate_api.url}/v1/files/")
    checksums = {upload["checksums"]["sha256"] for upload in replicate_api.uploads.values()}
    assert checksums == {_sha(photo)}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(name=st.text(min_size=1, max_size=300))
def test_a_hostile_input_name_never_reaches_replicate(replicate_api, make_backend, photo, name):
    """An input's name comes from a web user's upload: only the role's name is sent."""
    replicate_api.upload_parts.clear()
    backend = make_backend(model="black-forest-labs/flux-kontext-pro")
    image = load_input(photo, name=name)
    backend.generate(Request("x", inputs=(image,)), Context())
    assert replicate_api.upload_parts[-1]["filename"] == "image.png"


# -- the stand-in is as strict as Replicate ------------------------------------------------


def test_files_need_the_token_and_answer_the_file_object(sdk, replicate_api, photo):
    created = sdk.files.create(photo)
    assert (created.name, created.content_type, created.size) == (
        "photo.png",
        "image/png",
        photo.stat().st_size,
    )
    url = created.urls["get"]
    assert httpx.get(url).status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(url, headers=headers).json()["id"] == created.id
    assert httpx.get(f"{url}/download", headers=headers).content == photo.read_bytes()
    wrong = replicate.Client(api_token="r8_wrong", base_url=replicate_api.url)
    with pytest.raises(replicate.exceptions.ReplicateError) as refused:
        wrong.files.create(photo)
    wrong._client.close()
    assert refused.value.status == 401


def test_files_over_the_limit_are_refused_with_413(sdk, replicate_api, tmp_path):
    replicate_api.max_file_bytes = 1024  # the real limit is 100 MiB: the same rule, smaller
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 4096)
    with pytest.raises(replicate.exceptions.ReplicateError) as refused:
        sdk.files.create(big)
    assert refused.value.status == 413
    assert replicate_api.uploads == {}


def test_a_model_drops_inputs_it_does_not_have_and_requires_its_own(sdk, replicate_api):
    prediction = sdk.models.predictions.create(
        model="black-forest-labs/flux-kontext-pro", input={"prompt": "x", "image": "y"}
    )
    assert _only_prediction(replicate_api).dropped == ["image"]
    assert "image" not in (prediction.input or {})
    with pytest.raises(replicate.exceptions.ReplicateError) as refused:
        sdk.models.predictions.create(
            model="black-forest-labs/flux-kontext-dev", input={"prompt": "x"}
        )
    assert refused.value.status == 422
    assert refused.value.detail == "- input: input_image is required"
    with pytest.raises(replicate.exceptions.ReplicateError) as refused:
        sdk.models.predictions.create(
            model="black-forest-labs/flux-kontext-pro",
            input={"prompt": "x", "input_image": "photo.png"},
        )
    assert refused.value.detail == "- input.input_image: Does not match format 'uri'"


def test_an_input_url_that_cannot_be_fetched_fails_the_prediction(sdk, replicate_api, make_backend):
    sdk.models.predictions.create(
        model="black-forest-labs/flux-kontext-pro",
        input={"prompt": "x", "input_image": f"{replicate_api.url}/v1/files/nothing"},
    )
    assert (
        _only_prediction(replicate_api).fail == "Failed to download the file at input.input_image"
    )


# -- through imagen.yaml and the CLI ----------------------------------------------------------


def _home(home, replicate_api, slices: str):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-replicate"
    home.env["REPLICATE_API_TOKEN"] = TOKEN
    return home.write_config(
        "backends:\n"
        + "\n".join(
            f"  {line}" for line in slices.replace("{url}", replicate_api.url).strip().splitlines()
        )
        + "\n"
    )


def test_generate_with_an_image_end_to_end(home, replicate_api):
    _home(
        home,
        replicate_api,
        """
        kontext:
          type: replicate
          model: black-forest-labs/flux-kontext-pro
          base_url: {url}
          poll_interval_s: 0.05
        """.replace("        ", ""),
    )
    photo = _png(home.cwd / "a.png")
    proc = home.run(
        "generate", "x", "--image", "a.png", "-b", "kontext", "--strength", "0.5", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    (saved,) = json.loads(proc.stdout)["images"]
    record = json.loads(Path(saved["sidecar"]).read_text())
    assert [(item["role"], item["sha256"]) for item in record["inputs"]] == [("image", _sha(photo))]
    assert "strength" in record["metadata"]["ignored"]
    assert _only_prediction(replicate_api).seen["input_image"]["sha256"] == _sha(photo)
    with Image.open(saved["path"]) as out:
        assert out.size == (96, 64)
    assert TOKEN not in proc.stdout + proc.stderr + Path(saved["sidecar"]).read_text()


def test_a_mask_for_a_model_without_one_is_refused_before_any_http(home, replicate_api):
    _home(
        home,
        replicate_api,
        """
        kontext:
          type: replicate
          model: black-forest-labs/flux-kontext-pro
          base_url: {url}
        """.replace("        ", ""),
    )
    _png(home.cwd / "a.png")
    _mask(home.cwd / "m.png")
    proc = home.run("generate", "x", "--image", "a.png", "--mask", "m.png", "-b", "kontext")
    assert proc.returncode == 2
    assert 'backend "kontext" takes no mask' in proc.stderr
    assert replicate_api.requests == []  # nothing uploaded, nothing created


def test_the_yaml_mapping_overrides_the_familys(home, replicate_api):
    _home(
        home,
        replicate_api,
        """
        pro:
          type: replicate
          model: black-forest-labs/flux-1.1-pro
          base_url: {url}
          poll_interval_s: 0.05
          inputs: {image: image_prompt, reference: null}
        sdxl:
          type: replicate
          model: stability-ai/sdxl:{sdxl}
          base_url: {url}
          inputs: {mask: null}
        """.replace("        ", "").replace("{sdxl}", SDXL_VERSION),
    )
    photo = _png(home.cwd / "a.png")
    _mask(home.cwd / "m.png")
    home.run("generate", "x", "--image", "a.png", "-b", "pro", check=True)
    assert _only_prediction(replicate_api).seen["image_prompt"]["sha256"] == _sha(photo)
    refused = home.run("generate", "x", "--reference", "a.png", "-b", "pro")
    assert refused.returncode == 2
    assert 'backend "pro" takes no reference input' in refused.stderr
    masked = home.run("generate", "x", "--image", "a.png", "--mask", "m.png", "-b", "sdxl")
    assert masked.returncode == 2
    assert 'backend "sdxl" takes no mask' in masked.stderr
    assert len(replicate_api.predictions) == 1


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ("{picture: input_image}", "unknown field 'picture'"),
        ("{image: img}", "black-forest-labs/flux-kontext-pro has no input 'img'"),
        ("{mask: 3}", "must be a model input name or null"),
    ],
)
def test_a_bad_mapping_is_one_config_error_naming_file_and_key(
    home, replicate_api, inputs, message
):
    config = _home(
        home,
        replicate_api,
        f"""
        kontext:
          type: replicate
          model: black-forest-labs/flux-kontext-pro
          base_url: {{url}}
          inputs: {inputs}
        """.replace("        ", ""),
    )
    _png(home.cwd / "a.png")
    proc = home.run("generate", "x", "--image", "a.png", "-b", "kontext")
    assert proc.returncode == 3, proc.stderr  # docs/cli.md: a configuration error
    (line,) = proc.stderr.strip().splitlines()
    assert message in line
    assert str(config.name) in line
    key = inputs.strip("{}").split(":")[0]
    assert f"backends.kontext.inputs.{key}" in line
    assert "Traceback" not in proc.stderr
    assert replicate_api.requests == []


def test_config_check_online_checks_the_mapping_against_the_models_schema(home, replicate_api):
    """A model imagen has no input list for: its version's schema says what it takes."""
    config = _home(
        home,
        replicate_api,
        """
        lora:
          type: replicate
          model: acme/flux-schnell-lora
          family: flux-schnell
          base_url: {url}
          inputs: {image: init_image}
        wrong-family:
          type: replicate
          model: acme/flux-schnell-lora
          family: sdxl
          base_url: {url}
        right:
          type: replicate
          model: acme/flux-schnell-lora
          family: flux-schnell
          base_url: {url}
          input: {lora_weights: x}
        """.replace("        ", ""),
    )
    proc = home.run("config", "check", "--online")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    (lora,) = [line for line in lines if " lora (replicate)" in line]
    assert lora.startswith("  FAIL  lora (replicate): acme/flux-schnell-lora has no input ")
    assert "'init_image' for image" in lora
    assert f"{config.name}" in lora
    assert "backends.lora.inputs.image" in lora
    (family,) = [line for line in lines if "wrong-family (replicate)" in line]
    assert "has no input 'negative_prompt' for negative_prompt" in family
    assert "backends.wrong-family.family" in family
    assert any(line.startswith("  ok    right (replicate)") for line in lines)
    assert replicate_api.count("POST", "/") == 0  # nothing uploaded, nothing billed


def test_a_refused_upload_creates_no_prediction(replicate_api, make_backend, photo):
    replicate_api.max_file_bytes = 64  # smaller than the photo: the API answers 413
    backend = make_backend(model="black-forest-labs/flux-kontext-pro")
    with pytest.raises(PermanentBackendError, match=r"Replicate rejected the input \(413\)"):
        backend.generate(Request("x", inputs=(load_input(photo),)), Context())
    assert replicate_api.count("POST", "/v1/files") == 1  # a 413 is not retried
    assert replicate_api.predictions == {}

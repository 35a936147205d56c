"""Edits through the real openai SDK's ``images.edit``, against the loopback stand-in."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai_standin import KEY
from PIL import Image

from imagen import Context, PermanentBackendError, Request, RequestError
from imagen.inputs import InputImage, load_input
from imagen.pipeline import check_request
from imagen_openai.edits import MAX_IMAGE_BYTES


def _png(path: Path, size=(1024, 1024), mode="RGB", color=(200, 40, 40)) -> Path:
    Image.new(mode, size, color if mode != "RGBA" else (*color[:3], 255)).save(path)
    return path


def _alpha_mask(path: Path, size=(1024, 1024)) -> Path:
    """OpenAI's form: opaque, with a transparent square to repaint."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    mask.save(path)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _request(*inputs, prompt="put a hat on it", **kwargs) -> Request:
    return Request(prompt, inputs=tuple(inputs), **kwargs)


def test_two_images_and_a_mask_arrive_as_sent(openai_api, make_backend, tmp_path):
    first = load_input(_png(tmp_path / "cat.png"), "image")
    second = load_input(_png(tmp_path / "hat.webp", color=(10, 200, 10)), "reference")
    # a WebP by its bytes despite the .png-free name: its part says image/webp
    Image.open(tmp_path / "hat.webp").save(tmp_path / "hat2.webp", "WEBP")
    second = load_input(tmp_path / "hat2.webp", "reference")
    mask = load_input(_alpha_mask(tmp_path / "mask.png"), "mask")
    backend = make_backend(model="gpt-image-1.5", quality="low")
    result = backend.generate(
        _request(first, second, mask, width=1024, height=1024, count=2), Context()
    )
    assert len(result.images) == 2
    (edit,) = openai_api.edits
    fields = edit["fields"]
    assert fields["model"] == "gpt-image-1.5"
    assert fields["prompt"] == "put a hat on it"
    assert fields["n"] == "2"
    assert fields["size"] == "1024x1024"
    assert fields["quality"] == "low"
    files = [(f["field"], f["content_type"], f["sha256"], f["size"]) for f in edit["files"]]
    assert files == [
        ("image[]", "image/png", first.sha256, first.size),
        ("image[]", "image/webp", second.sha256, second.size),
        ("mask", "image/png", mask.sha256, mask.size),  # already OpenAI's form: as is
    ]
    assert result.metadata["model"] == "gpt-image-1.5"
    assert "strength" not in result.metadata.get("ignored", [])


def test_input_fidelity_passes_to_an_edit_and_is_ignored_without_inputs(
    openai_api, make_backend, tmp_path
):
    image = load_input(_png(tmp_path / "face.png"), "image")
    backend = make_backend(model="gpt-image-1.5")
    result = backend.generate(_request(image, options={"input_fidelity": "high"}), Context())
    assert openai_api.edits[-1]["fields"]["input_fidelity"] == "high"
    assert result.metadata["input_fidelity"] == "high"
    assert "ignored" not in result.metadata
    plain = backend.generate(Request("a face", options={"input_fidelity": "high"}), Context())
    assert "input_fidelity" not in openai_api.received[-1]["body"]
    assert plain.metadata["ignored"] == ["options.input_fidelity"]


@pytest.mark.parametrize(
    ("model", "value", "message"),
    [
        ("gpt-image-1-mini", "high", "gpt-image-1-mini takes input_fidelity=low only"),
        ("gpt-image-2", "low", "gpt-image-2 takes no input_fidelity"),
        ("gpt-image-1.5", "max", "option input_fidelity must be high or low, not 'max'"),
    ],
)
def test_input_fidelity_a_model_cannot_take_is_refused_before_sending(
    openai_api, make_backend, tmp_path, model, value, message
):
    image = load_input(_png(tmp_path / "face.png"), "image")
    backend = make_backend(model=model)
    request = _request(image, options={"input_fidelity": value})
    with pytest.raises(RequestError, match=message):
        check_request(backend, request)
    with pytest.raises(RequestError, match=message):
        backend.generate(request, Context())
    assert openai_api.traffic.submissions == []


def test_the_stand_in_refuses_what_imagen_refuses(openai_api, tmp_path):
    """Without imagen's checks, the endpoint itself refuses: the stand-in is as strict."""
    import openai

    client = openai.OpenAI(api_key=KEY, base_url=openai_api.api, max_retries=0)
    # bytes here: this is a test's own client, not the adapter (which streams its files)
    image = _png(tmp_path / "a.png")
    small_mask = _alpha_mask(tmp_path / "m.png", size=(512, 512))
    opaque = _png(tmp_path / "opaque.png")
    cases = [
        ({"mask": ("m.png", small_mask.read_bytes(), "image/png")}, "mask", "same dimensions"),
        ({"mask": ("m.png", opaque.read_bytes(), "image/png")}, "mask", "missing alpha channel"),
        ({"model": "gpt-image-1-mini", "input_fidelity": "high"}, "input_fidelity", "not supp"),
        ({"model": "dall-e-3"}, "model", "Invalid value: 'dall-e-3'"),
        ({"model": "gpt-4o"}, "model", "Invalid value: 'gpt-4o'"),
    ]
    for extra, param, text in cases:
        arguments = {"model": "gpt-image-1.5", **extra}
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.edit(
                image=[("a.png", image.read_bytes(), "image/png")], prompt="x", **arguments
            )
        assert caught.value.status_code == 400
        assert caught.value.body["param"] == param
        assert caught.value.body["type"] == "invalid_request_error"
        assert text in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError, match="unsupported mimetype"):
        client.images.edit(
            image=[("a.png", image.read_bytes(), "application/octet-stream")],
            prompt="x",
            model="gpt-image-1.5",
        )
    with pytest.raises(openai.BadRequestError, match="maximum length 16"):
        client.images.edit(
            image=[("a.png", image.read_bytes(), "image/png")] * 17,
            prompt="x",
            model="gpt-image-1.5",
        )
    refused = httpx.post(
        f"{openai_api.api}/images/edits",
        json={"model": "gpt-image-1.5", "prompt": "x"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert refused.status_code == 400
    assert "multipart/form-data" in refused.json()["error"]["message"]


def test_a_mask_of_another_size_is_refused_before_sending(openai_api, make_backend, tmp_path):
    image = load_input(_png(tmp_path / "a.png", size=(1024, 1536)), "image")
    mask = load_input(_alpha_mask(tmp_path / "m.png"), "mask")
    backend = make_backend()
    with pytest.raises(RequestError, match=r"the mask is 1024×1024.*1024×1536"):
        backend.generate(_request(image, mask), Context())
    assert openai_api.traffic.submissions == []


def test_a_white_means_repaint_mask_is_sent_as_openais_alpha_mask(
    openai_api, make_backend, tmp_path
):
    image = load_input(_png(tmp_path / "a.png", size=(256, 256)), "image")
    white = Image.new("L", (256, 256), 0)
    white.paste(255, (0, 0, 128, 256))  # repaint the left half
    white.save(tmp_path / "white.png")
    mask = load_input(tmp_path / "white.png", "mask")
    make_backend(model="gpt-image-2").generate(_request(image, mask), Context())
    sent = openai_api.edits[-1]["files"][-1]
    assert sent["field"] == "mask"
    assert sent["mode"] == "RGBA"
    assert (sent["width"], sent["height"]) == (256, 256)
    assert sent["sha256"] != mask.sha256
    assert not list(Path(tmp_path).glob("imagen-openai-mask-*"))


def test_sixteen_images_go_in_order_and_a_seventeenth_is_refused(
    openai_api, make_backend, tmp_path
):
    paths = [_png(tmp_path / f"{n}.png", size=(64, 64), color=(n, n, n)) for n in range(17)]
    images = [load_input(path, "image") for path in paths[:8]]
    references = [load_input(path, "reference") for path in paths[8:16]]
    make_backend().generate(_request(*references, *images), Context())
    sent = [(f["field"], f["sha256"]) for f in openai_api.edits[-1]["files"]]
    assert sent == [("image[]", item.sha256) for item in (*images, *references)]  # images first
    with pytest.raises(RequestError, match="more than the 16 allowed"):
        _request(*images, *references, load_input(paths[16], "image"))
    assert len(openai_api.traffic.submissions) == 1


def test_an_image_over_50_mb_is_refused_before_sending(openai_api, make_backend, tmp_path):
    path = _png(tmp_path / "a.png", size=(64, 64))
    with path.open("ab") as out:  # bytes after IEND: still a PNG, now too large
        out.truncate(MAX_IMAGE_BYTES)
    image = load_input(path, "image")
    with pytest.raises(RequestError, match="less than 50 MB"):
        make_backend().generate(_request(image), Context())
    assert openai_api.traffic.submissions == []


def test_an_edit_is_priced_from_its_input_image_tokens(openai_api, make_backend, tmp_path):
    image = load_input(_png(tmp_path / "a.png"), "image")
    backend = make_backend(model="gpt-image-1-mini", quality="medium")
    result = backend.generate(_request(image, width=1024, height=1024), Context())
    usage = result.metadata["usage"]
    details = usage["input_tokens_details"]
    assert details["image_tokens"] > 0
    expected = (
        details["text_tokens"] * 2.0 + details["image_tokens"] * 2.5 + usage["output_tokens"] * 8.0
    ) / 1_000_000
    assert result.metadata["cost_usd"] == pytest.approx(expected, abs=1e-6)
    # the estimate is the outputs' per-image price: input tokens are known only afterwards
    estimate = backend.estimate_cost(_request(image, width=1024, height=1024))
    assert estimate == backend.estimate_cost(Request("x", width=1024, height=1024)) == 0.011


def test_an_edit_without_token_counts_or_prices_has_no_cost(openai_api, make_backend, tmp_path):
    image = load_input(_png(tmp_path / "a.png"), "image")
    result = make_backend(model="gpt-image-1.5", quality="low").generate(
        _request(image, width=1024, height=1024), Context()
    )
    assert "cost_usd" not in result.metadata  # the per-image table would understate it
    assert "no token prices are known for gpt-image-1.5" in result.metadata["cost_note"]
    openai_api.with_usage = False
    result = make_backend(model="gpt-image-1-mini").generate(_request(image), Context())
    assert "cost_usd" not in result.metadata
    assert "no input image tokens" in result.metadata["cost_note"]
    result = make_backend(model="gpt-image-1-mini", price_per_image=0.02).generate(
        _request(image, count=2), Context()
    )
    assert result.metadata["cost_usd"] == pytest.approx(0.04)


def test_an_upstream_refusal_of_an_edit_is_a_clear_error(openai_api, make_backend, tmp_path):
    image = load_input(_png(tmp_path / "a.png"), "image")
    openai_api.fail_with(400, "invalid_request_error", "Invalid image.", code="invalid_image")
    with pytest.raises(PermanentBackendError, match=r"OpenAI answered 400: Invalid image\."):
        make_backend().generate(_request(image), Context())


def test_imagen_generate_with_an_image_end_to_end(home, openai_api, tmp_path):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-openai"
    home.env["OPENAI_API_KEY"] = KEY
    home.write_config(
        f"backends:\n  gpt:\n    type: openai\n    base_url: {openai_api.api}\n"
        "    model: gpt-image-1-mini\n"
    )
    photo = _png(tmp_path / "a.png", size=(1024, 1536))
    mask = _alpha_mask(tmp_path / "m.png", size=(1024, 1536))
    proc = home.run(
        "generate", "x", "--image", str(photo), "--mask", str(mask), "-b", "gpt",
        "--strength", "0.5", "--opt", "input_fidelity=low", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (edit,) = openai_api.edits
    assert [f["sha256"] for f in edit["files"]] == [_sha(photo), _sha(mask)]
    assert edit["fields"]["input_fidelity"] == "low"
    result = json.loads(proc.stdout)
    record = json.loads(Path(result["images"][0]["sidecar"]).read_text())
    assert "strength" in record["metadata"]["ignored"]
    assert record["metadata"]["cost_usd"] > 0
    roles = [item["role"] for item in record["inputs"]]
    assert roles == ["image", "mask"]
    assert "strength" in proc.stderr  # listed as ignored, on the terminal too
    assert KEY not in Path(result["images"][0]["sidecar"]).read_text()
    with photo.open("rb") as stdin:
        piped = home.run("edit", "-", "y", "-b", "gpt", "--json", stdin=stdin)
    assert piped.returncode == 0, piped.stderr
    assert openai_api.edits[-1]["files"][0]["sha256"] == _sha(photo)
    refused = home.run("edit", str(photo), "z", "-b", "gpt", "--opt", "input_fidelity=high")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        'imagen: backend "gpt": gpt-image-1-mini takes input_fidelity=low only'
    )
    assert len(openai_api.edits) == 2  # refused before anything was sent


def test_a_50_mb_input_is_streamed_not_held(tmp_path):
    """bench/openai_edit_memory.py's numbers: the adapter's peak stays far below the input."""
    import subprocess
    import sys

    bench = Path(__file__).resolve().parents[2] / "bench" / "openai_edit_memory.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--json"], capture_output=True, text=True, check=True
    )
    numbers = json.loads(proc.stdout)
    assert numbers["input_bytes"] > 49_000_000
    assert numbers["bytes"]["peak_bytes"] > numbers["input_bytes"] * 0.95  # the reference
    assert numbers["adapter"]["peak_bytes"] < 8 * 1024 * 1024


_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")


@st.composite
def _masks(draw):
    """A mask in any mode and format, of the image's size or not, with any alpha."""
    mode = draw(st.sampled_from(_MODES))
    size = draw(st.sampled_from([(48, 32), (48, 32), (32, 48), (32, 32)]))
    fmt = draw(st.sampled_from(["PNG", "PNG", "WEBP", "JPEG"]))
    if fmt == "JPEG" and mode not in ("L", "RGB"):
        mode = "L"
    pixels = draw(st.binary(min_size=size[0] * size[1], max_size=size[0] * size[1]))
    return mode, size, fmt, pixels


def _hostile_names():
    return st.text(
        st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40
    ) | st.sampled_from(['a"\r\nContent-Type: text/html\r\n\r\nx.png', "../../etc/passwd", "-"])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mask=_masks(), name=_hostile_names())
def test_any_mask_is_refused_by_imagen_or_accepted_by_openai(
    openai_api, make_backend, tmp_path_factory, mask, name
):
    """Generated masks and hostile names: never a 400 from upstream, never a name on the wire."""
    mode, size, fmt, pixels = mask
    directory = tmp_path_factory.mktemp("mask")
    image = load_input(_png(directory / "a.png", size=(48, 32)), "image", name=name)
    gray = Image.frombytes("L", size, pixels)
    picture = gray.convert(mode) if mode != "LA" else Image.merge("LA", (gray, gray))
    if mode == "RGBA":
        picture = Image.merge("RGBA", (gray, gray, gray, gray))
    path = directory / f"m.{fmt.lower()}"
    picture.save(path, fmt)
    loaded = load_input(path, "mask", name=name)
    backend = make_backend(model="gpt-image-2")
    before = len(openai_api.edits)
    if size != (48, 32):  # the only refusal a mask of these sizes earns (core's, or ours)
        with pytest.raises(RequestError, match="the mask is"):
            backend.generate(_request(image, loaded, width=1024, height=1024), Context())
        assert len(openai_api.edits) == before
        return
    result = backend.generate(_request(image, loaded, width=1024, height=1024), Context())
    assert len(result.images) == 1
    sent = openai_api.edits[-1]["files"]
    assert [part["filename"] for part in sent] == ["image-1.png", "mask.png"]
    assert sent[1]["mode"] in ("RGBA", "LA", "P", "PA")


def test_a_part_name_is_never_the_users(openai_api, make_backend, tmp_path):
    image = InputImage(**{**load_input(_png(tmp_path / "a.png")).__dict__, "name": "secret.png"})
    make_backend().generate(_request(image), Context())
    assert openai_api.edits[-1]["files"][0]["filename"] == "image-1.png"

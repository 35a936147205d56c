"""Input images through ComfyUI: uploads named by content, LoadImage mapping, the image templates."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from comfy_standin import ComfyStandIn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagen import Cancelled, Context, PermanentBackendError, Request
from imagen.inputs import load_input
from imagen.metadata import png
from imagen.testing import RecordingContext

MODEL = "sd_xl_base_1.0.safetensors"


def _png(path: Path, size=(96, 64), color=(200, 30, 30), mode="RGB", alpha_box=None) -> Path:
    from PIL import Image, ImageDraw

    picture = Image.new(mode, size, color)
    if alpha_box is not None:
        ImageDraw.Draw(picture).rectangle(alpha_box, fill=(0, 0, 0, 0))
    picture.save(path, "PNG")
    return path


def _white_mask(path: Path, size=(96, 64)) -> Path:
    from PIL import Image, ImageDraw

    picture = Image.new("L", size, 0)
    ImageDraw.Draw(picture).rectangle((10, 10, 40, 40), fill=255)
    picture.save(path, "PNG")
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _inputs(tmp_path: Path, mask: bool = False):
    image = load_input(_png(tmp_path / "a.png"), "image")
    items = [image]
    if mask:
        items.append(load_input(_white_mask(tmp_path / "m.png"), "mask"))
    return tuple(items)


# -- uploads and mapping, against the stand-in ------------------------------------------------


def test_img2img_uploads_the_image_and_loads_it_by_name(comfy, make_backend, tmp_path):
    backend = make_backend(template="img2img")
    assert backend.input_support().images == 1
    assert backend.input_support().strength
    assert not backend.input_support().mask
    inputs = _inputs(tmp_path)
    result = backend.generate(Request("x", seed=3, inputs=inputs, strength=0.6), Context())
    (upload,) = comfy.uploads
    assert upload["sha256"] == _sha(tmp_path / "a.png")  # the bytes arrived unchanged
    assert upload["size"] == (tmp_path / "a.png").stat().st_size
    assert upload["type"] == "input"
    assert upload["overwrite"] == "false"
    name = f"imagen/{inputs[0].sha256}.png"
    graph = comfy.received[-1]["prompt"]
    assert graph["10"]["class_type"] == "LoadImage"
    assert graph["10"]["inputs"]["image"] == name
    assert graph["3"]["inputs"]["denoise"] == 0.6
    assert result.metadata["inputs"]["10.image"] == name
    assert result.metadata["inputs"]["3.denoise"] == 0.6
    data = result.images[0].stream.read()
    with png_size(data) as size:
        assert size == (96, 64)  # the input's size: it was loaded


def test_an_upload_over_the_servers_limit_is_one_line_and_no_run(make_backend, tmp_path):
    import random

    from PIL import Image

    noise = random.Random(2).randbytes(700 * 700 * 3)  # about 1.4 MB as PNG: noise won't shrink
    Image.frombytes("RGB", (700, 700), noise).save(tmp_path / "big.png", compress_level=1)
    big = load_input(tmp_path / "big.png", "image")
    with ComfyStandIn(max_upload_mb=1) as small:
        backend = make_backend(template="img2img", base_url=small.url)
        with pytest.raises(PermanentBackendError) as raised:
            backend.generate(Request("x", seed=3, inputs=(big,)), Context())
        assert (small.uploads, small.received) == ([], [])
    assert str(raised.value) == (
        "ComfyUI refused an input as too large (/upload/image answered 413): raise the "
        "server's --max-upload-size (100 MB by default) or send a smaller image"
    )


class png_size:
    def __init__(self, data: bytes) -> None:
        from PIL import Image

        self.picture = Image.open(io.BytesIO(data))

    def __enter__(self):
        return self.picture.size

    def __exit__(self, *exc):
        self.picture.close()


def test_a_second_run_sends_no_bytes_again(comfy, make_backend, tmp_path):
    inputs = _inputs(tmp_path)
    backend = make_backend(template="img2img")
    backend.generate(Request("x", seed=1, inputs=inputs), Context())
    backend.generate(Request("x", seed=2, inputs=inputs), Context())
    assert len(comfy.uploads) == 1  # found there by its name (HEAD /view) the second time
    assert comfy.requests.count("HEAD /view") == 2
    assert comfy.received[-1]["prompt"]["10"]["inputs"]["image"] == (
        f"imagen/{inputs[0].sha256}.png"
    )


def test_a_name_taken_by_other_bytes_is_renamed_by_comfyui(comfy, make_backend, tmp_path):
    inputs = _inputs(tmp_path)
    # Someone else's file already sits under the name imagen would use, with other bytes.
    comfy.files[("input", "imagen", f"{inputs[0].sha256}.png")] = b"not the same"
    make_backend(template="img2img").generate(Request("x", seed=1, inputs=inputs), Context())
    (upload,) = comfy.uploads
    renamed = f"{inputs[0].sha256} (1).png"
    assert upload["name"] == renamed
    assert comfy.received[-1]["prompt"]["10"]["inputs"]["image"] == f"imagen/{renamed}"


def test_inpaint_uploads_image_and_mask_into_their_loaders(comfy, make_backend, tmp_path):
    backend = make_backend(template="inpaint")
    assert backend.input_support().mask
    inputs = _inputs(tmp_path, mask=True)
    backend.generate(Request("x", seed=1, inputs=inputs, strength=0.8), Context())
    assert [u["sha256"] for u in comfy.uploads] == [
        _sha(tmp_path / "a.png"),
        _sha(tmp_path / "m.png"),
    ]
    graph = comfy.received[-1]["prompt"]
    assert graph["10"]["inputs"]["image"] == f"imagen/{inputs[0].sha256}.png"
    assert graph["12"]["class_type"] == "LoadImageMask"
    assert graph["12"]["inputs"]["image"] == f"imagen/{inputs[1].sha256}.png"
    assert graph["12"]["inputs"]["channel"] == "red"  # drawn in white, not transparency
    assert graph["13"]["class_type"] == "SetLatentNoiseMask"
    assert graph["3"]["inputs"]["denoise"] == 0.8


def test_a_transparent_mask_is_read_from_its_alpha(comfy, make_backend, tmp_path):
    image = load_input(_png(tmp_path / "a.png"), "image")
    mask = load_input(
        _png(tmp_path / "m.png", color=(0, 0, 0, 255), mode="RGBA", alpha_box=(5, 5, 20, 20)),
        "mask",
    )
    make_backend(template="inpaint").generate(Request("x", seed=1, inputs=(image, mask)), Context())
    assert comfy.received[-1]["prompt"]["12"]["inputs"]["channel"] == "alpha"


def test_a_mask_on_the_image_loader_goes_through_upload_mask(comfy, make_backend, tmp_path):
    """A workflow that takes its mask from LoadImage's MASK output: /upload/mask merges it."""
    from PIL import Image

    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": MODEL}},
        "10": {
            "class_type": "LoadImage",
            "inputs": {"image": "example.png"},
            "_meta": {"title": "Photo"},
        },
        "11": {
            "class_type": "VAEEncodeForInpaint",
            "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["10", 1], "grow_mask_by": 6},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0],
                "seed": 0,
                "steps": 4,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["11", 0],
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}},
    }
    (tmp_path / "flow.json").write_text(json.dumps(graph))
    backend = make_backend(
        workflow="flow.json",
        inputs={"image": "Photo.image", "mask": "Photo.image", "prompt": "6.text"},
    )
    inputs = _inputs(tmp_path, mask=True)
    backend.generate(Request("x", seed=1, inputs=inputs), Context())
    first, second = comfy.uploads
    assert first["endpoint"] == "image"
    assert first["sha256"] == _sha(tmp_path / "a.png")
    assert second["endpoint"] == "mask"
    loaded = comfy.received[-1]["prompt"]["10"]["inputs"]["image"]
    assert loaded == f"imagen/{second['name']}"
    stored = comfy.files[("input", "imagen", second["name"])]
    with Image.open(io.BytesIO(stored)) as merged:
        assert merged.mode == "RGBA"
        # White in the mask (repaint) became transparency: LoadImage's MASK is 1 - alpha.
        assert merged.getpixel((20, 20))[3] == 0
        assert merged.getpixel((60, 50))[3] == 255
        assert merged.getpixel((60, 50))[:3] == (200, 30, 30)  # the photo's own pixels


def test_resume_uploads_nothing(comfy, make_backend, tmp_path):
    inputs = _inputs(tmp_path)
    comfy.slow_next(1.0)
    context = RecordingContext()
    backend = make_backend(template="img2img")
    backend.generate(Request("x", seed=5, inputs=inputs), context)
    uploads, requests = len(comfy.uploads), list(comfy.requests)
    result = make_backend(template="img2img").resume(
        context.run_ids[-1], Request("x", seed=5, inputs=inputs), RecordingContext()
    )
    assert len(result.images) == 1
    assert len(comfy.uploads) == uploads == 1
    new = comfy.requests[len(requests) :]
    assert not [r for r in new if r.startswith(("POST /upload", "HEAD /view"))]
    assert result.metadata["inputs"]["10.image"] == f"imagen/{inputs[0].sha256}.png"


def test_a_resumed_run_records_the_name_comfyui_stored_its_input_under(
    comfy, make_backend, tmp_path
):
    inputs = _inputs(tmp_path)
    comfy.files[("input", "imagen", f"{inputs[0].sha256}.png")] = b"someone else's bytes"
    comfy.slow_next(1.0)
    context = RecordingContext()
    make_backend(template="img2img").generate(
        Request("x", seed=5, inputs=inputs, strength=0.6), context
    )
    result = make_backend(template="img2img").resume(
        context.run_ids[-1], Request("x", seed=5, inputs=inputs, strength=0.6), RecordingContext()
    )
    assert result.metadata["inputs"]["10.image"] == f"imagen/{inputs[0].sha256} (1).png"
    assert result.metadata["inputs"]["3.denoise"] == 0.6  # what is not a file is as set


def test_a_template_that_needs_an_image_refuses_without_one(comfy, make_backend):
    from imagen import RequestError

    with pytest.raises(RequestError, match="starts from an input image: give --image"):
        make_backend(template="img2img").check(Request("x"))
    assert comfy.requests == []


def test_the_workflow_maps_what_is_accepted(make_backend, tmp_path):
    plain = make_backend()
    assert not plain.input_support().any
    assert not plain.input_support().strength


def test_cancelled_while_uploading_stops_without_submitting(comfy, make_backend, tmp_path):
    context = RecordingContext()
    context.cancel()
    with pytest.raises(Cancelled):
        make_backend(template="img2img").generate(Request("x", inputs=_inputs(tmp_path)), context)
    assert comfy.uploads == []
    assert comfy.received == []


# -- the stand-in answers as ComfyUI's server.py does -------------------------------------------


def _post(comfy, path, **kwargs):
    import httpx

    return httpx.post(comfy.url + path, **kwargs)


def test_standin_upload_answers_like_comfyui(comfy):
    answer = _post(comfy, "/upload/image", files={"image": ("a.png", b"one", "image/png")})
    assert answer.status_code == 200
    assert answer.json() == {"name": "a.png", "subfolder": "", "type": "input"}
    # Same name, same bytes: kept, same name. Other bytes: "a (1).png", then "a (2).png".
    again = _post(comfy, "/upload/image", files={"image": ("a.png", b"one", "image/png")})
    assert again.json()["name"] == "a.png"
    other = _post(comfy, "/upload/image", files={"image": ("a.png", b"two", "image/png")})
    assert other.json()["name"] == "a (1).png"
    third = _post(comfy, "/upload/image", files={"image": ("a.png", b"three", "image/png")})
    assert third.json()["name"] == "a (2).png"
    forced = _post(
        comfy,
        "/upload/image",
        data={"overwrite": "true"},
        files={"image": ("a.png", b"four", "image/png")},
    )
    assert forced.json()["name"] == "a.png"
    assert comfy.files[("input", "", "a.png")] == b"four"
    sub = _post(
        comfy,
        "/upload/image",
        data={"subfolder": "imagen", "type": "temp"},
        files={"image": ("b.png", b"x", "image/png")},
    )
    assert sub.json() == {"name": "b.png", "subfolder": "imagen", "type": "temp"}
    assert _post(comfy, "/upload/image", data={"type": "input"}).status_code == 400
    assert _post(comfy, "/upload/image", json={"image": "x"}).status_code == 400
    escape = _post(
        comfy,
        "/upload/image",
        data={"subfolder": "../../etc"},
        files={"image": ("c.png", b"x", "image/png")},
    )
    assert escape.status_code == 400
    bad_type = _post(
        comfy, "/upload/image", data={"type": "models"}, files={"image": ("d.png", b"x")}
    )
    assert bad_type.status_code == 500


def test_standin_upload_mask_merges_alpha_or_stores_nothing(comfy):
    from PIL import Image

    photo = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(photo, "PNG")
    _post(comfy, "/upload/image", files={"image": ("p.png", photo.getvalue(), "image/png")})
    mask = io.BytesIO()
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(mask, "PNG")
    ref = json.dumps({"filename": "p.png", "subfolder": "", "type": "input"})
    answer = _post(
        comfy,
        "/upload/mask",
        data={"original_ref": ref},
        files={"image": ("pm.png", mask.getvalue(), "image/png")},
    )
    assert answer.json() == {"name": "pm.png", "subfolder": "", "type": "input"}
    with Image.open(io.BytesIO(comfy.files[("input", "", "pm.png")])) as merged:
        assert merged.getpixel((1, 1)) == (10, 20, 30, 0)
    gone = json.dumps({"filename": "nowhere.png", "subfolder": "", "type": "input"})
    answer = _post(
        comfy,
        "/upload/mask",
        data={"original_ref": gone},
        files={"image": ("nm.png", mask.getvalue(), "image/png")},
    )
    assert answer.status_code == 200  # as the real one: it says so, and stores nothing
    assert ("input", "", "nm.png") not in comfy.files
    missing_ref = _post(comfy, "/upload/mask", files={"image": ("q.png", b"x", "image/png")})
    assert missing_ref.status_code == 500


def test_standin_validates_loadimage_like_comfyui(comfy, make_backend, tmp_path):
    import httpx

    backend = make_backend(template="img2img")
    graph, _, _ = backend.settings.workflow.apply(
        Request("x", seed=1), 1, files={"image": "imagen/missing.png"}
    )
    answer = httpx.post(comfy.url + "/prompt", json={"prompt": graph})
    assert answer.status_code == 400
    (error,) = answer.json()["node_errors"]["10"]["errors"]
    assert error["type"] == "custom_validation_failed"
    assert error["message"] == "Custom validation failed for node"
    assert error["details"] == "image - Invalid image file: imagen/missing.png"
    assert error["extra_info"]["received_value"] == "imagen/missing.png"
    # Through the adapter, one line naming the node.
    with pytest.raises(PermanentBackendError, match=r"node 10 \(LoadImage \"Load Image\"\)"):
        backend.client.submit(graph, "00000000-0000-4000-8000-000000000000", "c")
    # A folder exists as far as os.path.exists goes: it validates, then fails to load.
    _post(comfy, "/upload/image", data={"subfolder": "imagen"}, files={"image": ("z.png", b"z")})
    graph["10"]["inputs"]["image"] = "imagen"
    queued = httpx.post(comfy.url + "/prompt", json={"prompt": graph})
    assert queued.status_code == 200
    prompt_id = queued.json()["prompt_id"]
    assert comfy.wait_until(lambda: prompt_id in comfy.history)
    status = comfy.history[prompt_id]["status"]
    assert status["status_str"] == "error"
    (failure,) = [data for kind, data in status["messages"] if kind == "execution_error"]
    assert failure["node_type"] == "LoadImage"
    assert failure["exception_type"] == "IsADirectoryError"
    # An empty name is the input folder itself: it passes too, as on a real server.
    graph["10"]["inputs"]["image"] = ""
    assert httpx.post(comfy.url + "/prompt", json={"prompt": graph}).status_code == 200
    info = httpx.get(comfy.url + "/object_info/LoadImage").json()["LoadImage"]
    assert "z.png" not in info["input"]["required"]["image"][0]  # top level only, as real


# -- the CLI ------------------------------------------------------------------------------------


def _config(home, comfy, template: str) -> None:
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-comfyui"
    home.write_config(
        f"""
        backends:
          gpu:
            type: comfyui
            base_url: {comfy.url}
            model: {MODEL}
            template: {template}
            default_steps: 4
        """
    )


def test_img2img_through_the_cli(home, comfy):
    _config(home, comfy, "img2img")
    image = _png(home.cwd / "a.png")
    proc = home.run("generate", "x", "--image", "a.png", "--strength", "0.6", "-b", "gpu", "--json")
    assert proc.returncode == 0, proc.stderr
    (saved,) = json.loads(proc.stdout)["images"]
    graph = comfy.received[-1]["prompt"]
    assert graph["10"]["inputs"]["image"] == f"imagen/{_sha(image)}.png"
    assert graph["3"]["inputs"]["denoise"] == 0.6
    assert comfy.uploads[0]["sha256"] == _sha(image)
    with Path(saved["path"]).open("rb") as file:
        texts, size = png.read_text(file)
    assert size == (96, 64)
    record = json.loads(texts["imagen"])
    assert "strength" not in record["metadata"].get("ignored", [])
    assert record["metadata"]["denoising_strength"] == 0.6
    assert "Denoising strength: 0.6" in texts["parameters"]


def test_inpaint_through_the_cli(home, comfy):
    _config(home, comfy, "inpaint")
    _png(home.cwd / "a.png")
    mask = _white_mask(home.cwd / "m.png")
    proc = home.run(
        "generate",
        "x",
        "--image",
        "a.png",
        "--mask",
        "m.png",
        "--strength",
        "0.6",
        "-b",
        "gpu",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    graph = comfy.received[-1]["prompt"]
    assert graph["12"]["inputs"]["image"] == f"imagen/{_sha(mask)}.png"
    assert graph["3"]["inputs"]["denoise"] == 0.6
    assert [u["sha256"] for u in comfy.uploads][-1] == _sha(mask)
    # Without --strength, the template's own denoise, on the record.
    proc = home.run("generate", "x", "--image", "a.png", "--mask", "m.png", "-b", "gpu", "--json")
    assert proc.returncode == 0, proc.stderr
    assert comfy.received[-1]["prompt"]["3"]["inputs"]["denoise"] == 1.0
    (saved,) = json.loads(proc.stdout)["images"]
    with Path(saved["path"]).open("rb") as file:
        texts, _ = png.read_text(file)
    assert json.loads(texts["imagen"])["metadata"]["denoising_strength"] == 1.0


def test_a_workflow_without_a_loadimage_mapping_refuses_inputs_offline(home, comfy):
    _config(home, comfy, "checkpoint")
    _png(home.cwd / "a.png")
    proc = home.run("generate", "x", "--image", "a.png", "-b", "gpu")
    assert proc.returncode != 0
    assert proc.stderr.strip() == 'imagen: backend "gpu" takes no input images'
    assert comfy.requests == []  # refused before any HTTP call


def test_inpaint_without_a_mask_is_refused_offline(home, comfy):
    _config(home, comfy, "inpaint")
    _png(home.cwd / "a.png")
    proc = home.run("generate", "x", "--image", "a.png", "-b", "gpu")
    assert proc.returncode != 0
    assert "give --mask" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert comfy.requests == []


# -- mapping errors, detached runs, hostile names ----------------------------------------------


def _flow(tmp_path: Path) -> str:
    from imagen_comfyui.templates import template_graph

    graph = template_graph(
        "img2img",
        {
            "model": MODEL,
            "steps": 4,
            "sampler": "euler",
            "scheduler": "normal",
            "cfg": 7.0,
            "width": 64,
            "height": 64,
            "clip_l": "",
            "t5xxl": "",
            "vae": "",
        },
    )
    (tmp_path / "flow.json").write_text(json.dumps(graph))
    return "flow.json"


@pytest.mark.parametrize(
    ("inputs", "key", "message"),
    [
        ({"mask": "Load Image.image"}, "inputs.mask", "map inputs.image too"),
        ({"image": "KSampler.steps"}, "inputs.image", "not a file name"),
        ({"strength": "Load Image.image"}, "inputs.strength", "not a number"),
        ({"images": "Load Image.image"}, "inputs.images", "unknown field 'images'"),
    ],
)
def test_input_mappings_are_checked_when_built(make_backend, tmp_path, inputs, key, message):
    from imagen import ConfigError

    with pytest.raises(ConfigError, match=message) as raised:
        make_backend(workflow=_flow(tmp_path), inputs={"prompt": "6.text", **inputs})
    assert key in str(raised.value)


def test_a_workflow_takes_inputs_only_where_mapped(make_backend, tmp_path):
    unmapped = make_backend(workflow=_flow(tmp_path))  # a LoadImage, but no mapping
    assert not unmapped.input_support().any
    mapped = make_backend(
        workflow=_flow(tmp_path), inputs={"image": "Load Image.image", "strength": "3.denoise"}
    )
    assert mapped.input_support().images == 1
    assert mapped.input_support().strength
    assert not mapped.input_support().mask


def test_detached_while_submitting_leaves_the_run_alone(comfy, make_backend, tmp_path):
    import threading

    comfy.stall_prompt_s = 3.0  # the POST /prompt hangs
    context = RecordingContext()
    outcome: dict = {}

    def run() -> None:
        try:
            make_backend(template="img2img").generate(
                Request("x", seed=1, inputs=_inputs(tmp_path)), context
            )
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert comfy.wait_until(lambda: comfy.received)
    context.detach()
    thread.join(30)
    assert isinstance(outcome.get("error"), Cancelled)
    assert "detached" in str(outcome["error"])
    assert comfy.interrupts == []
    assert comfy.queue_edits == []


def test_cancelled_while_submitting_interrupts(comfy, make_backend, tmp_path):
    import threading

    comfy.stall_prompt_s = 3.0
    context = RecordingContext()
    outcome: dict = {}

    def run() -> None:
        try:
            make_backend(template="img2img").generate(
                Request("x", seed=1, inputs=_inputs(tmp_path)), context
            )
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert comfy.wait_until(lambda: comfy.received)
    context.cancel()
    thread.join(30)
    assert isinstance(outcome.get("error"), Cancelled)
    prompt_id = comfy.received[-1]["prompt_id"]
    assert {"prompt_id": prompt_id} in comfy.interrupts
    assert {"delete": [prompt_id]} in comfy.queue_edits


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(min_size=1, max_size=80))
def test_a_hostile_input_name_never_reaches_comfyui(comfy, make_backend, tmp_path, name):
    """Whatever an input was called (a web user's upload name), ComfyUI sees its hash."""
    from dataclasses import replace

    from imagen_comfyui.uploads import Uploader

    backend = make_backend(template="img2img")
    image = replace(_inputs(tmp_path)[0], name=name)
    files = Uploader(
        backend.client, Context(), backend.settings.retry, backend.settings.workflow
    ).files(Request("x", inputs=(image,)))
    assert files == {"image": f"imagen/{image.sha256}.png"}
    assert all(upload["name"] == f"{image.sha256}.png" for upload in comfy.uploads)
    assert all(upload["subfolder"] == "imagen" for upload in comfy.uploads)

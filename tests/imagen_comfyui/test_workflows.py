"""Built-in templates and user workflows: mapping by id, by title, by detection."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from imagen import ConfigError, Context, PermanentBackendError, Request

WORKFLOWS = Path(__file__).parent / "workflows"


def _workflow(tmp_path: Path, name: str) -> str:
    shutil.copy(WORKFLOWS / name, tmp_path / name)
    return name  # relative to imagen.yaml's directory, as users write it


def _submitted(comfy) -> dict:
    return comfy.received[-1]["prompt"]


def _read(result) -> list[bytes]:
    return [image.stream.read() for image in result.images]


def test_checkpoint_template_fills_every_input(comfy, make_backend):
    backend = make_backend(default_steps=30, cfg=5.5, sampler="dpmpp_2m", scheduler="karras")
    request = Request("a red barn", negative_prompt="fog", width=640, height=448, seed=77, count=2)
    result = backend.generate(request, Context())
    graph = _submitted(comfy)
    assert graph["6"]["inputs"]["text"] == "a red barn"
    assert graph["7"]["inputs"]["text"] == "fog"
    assert graph["3"]["inputs"]["seed"] == 77
    assert graph["3"]["inputs"]["steps"] == 30  # the slice's default_steps
    assert (graph["3"]["inputs"]["cfg"], graph["3"]["inputs"]["sampler_name"]) == (5.5, "dpmpp_2m")
    assert graph["3"]["inputs"]["scheduler"] == "karras"
    assert graph["4"]["inputs"]["ckpt_name"] == "sd_xl_base_1.0.safetensors"
    assert graph["5"]["inputs"] == {"width": 640, "height": 448, "batch_size": 2}
    datas = _read(result)
    assert len(datas) == 2
    assert Image.open(io.BytesIO(datas[0])).size == (640, 448)
    assert result.metadata["inputs"] == {
        "6.text": "a red barn",
        "7.text": "fog",
        "3.seed": 77,
        "5.width": 640,
        "5.height": 448,
        "5.batch_size": 2,
    }


def test_flux_schnell_template(comfy, make_backend):
    backend = make_backend(template="flux-schnell", model="flux1-schnell.safetensors")
    result = backend.generate(Request("neon city", negative_prompt="blur", seed=5), Context())
    graph = _submitted(comfy)
    classes = {entry["class_type"] for entry in graph.values()}
    assert {"UNETLoader", "DualCLIPLoader", "VAELoader", "EmptySD3LatentImage"} <= classes
    sampler = graph["3"]["inputs"]
    assert (sampler["steps"], sampler["cfg"], sampler["scheduler"]) == (4, 1.0, "simple")
    assert graph["1"]["inputs"]["unet_name"] == "flux1-schnell.safetensors"
    assert graph["5"]["inputs"]["width"] == 1024
    assert result.metadata["ignored"] == ["negative_prompt"]  # cfg 1: a negative does nothing
    assert len(_read(result)) == 1


def test_user_workflow_detected(comfy, make_backend, tmp_path):
    backend = make_backend(workflow=_workflow(tmp_path, "sdxl_api.json"))
    backend.generate(
        Request("a glass bottle", negative_prompt="ugly", seed=9, steps=12, width=768, height=512),
        Context(),
    )
    graph = _submitted(comfy)
    assert graph["6"]["inputs"]["text"] == "a glass bottle"
    assert graph["7"]["inputs"]["text"] == "ugly"
    assert (graph["3"]["inputs"]["seed"], graph["3"]["inputs"]["steps"]) == (9, 12)
    assert (graph["5"]["inputs"]["width"], graph["5"]["inputs"]["height"]) == (768, 512)
    assert graph["4"]["inputs"]["ckpt_name"] == "sd_xl_base_1.0.safetensors"  # the user's own


def test_unset_fields_keep_the_workflows_values(comfy, make_backend, tmp_path):
    backend = make_backend(workflow=_workflow(tmp_path, "sdxl_api.json"))
    backend.generate(Request("a glass bottle", seed=1), Context())
    graph = _submitted(comfy)
    assert graph["7"]["inputs"]["text"] == "text, watermark"  # the curated negative stays
    assert graph["3"]["inputs"]["steps"] == 20


def test_mapping_by_id_and_by_title(comfy, make_backend, tmp_path):
    backend = make_backend(
        workflow=_workflow(tmp_path, "sdxl_api.json"),
        inputs={
            "prompt": "Positive.text",
            "negative_prompt": "7.text",
            "seed": ["KSampler.seed"],
            "width": "Empty Latent Image.width",
            "height": "5.height",
            "count": "5.batch_size",
        },
    )
    backend.generate(
        Request("mapped", negative_prompt="n", seed=3, width=320, height=256, count=2), Context()
    )
    graph = _submitted(comfy)
    assert (graph["6"]["inputs"]["text"], graph["7"]["inputs"]["text"]) == ("mapped", "n")
    assert graph["3"]["inputs"]["seed"] == 3
    assert graph["5"]["inputs"] == {"width": 320, "height": 256, "batch_size": 2}


def test_every_seed_in_the_graph_is_set(comfy, make_backend, tmp_path):
    backend = make_backend(workflow=_workflow(tmp_path, "hires_fix.json"))
    first = _read(backend.generate(Request("castle", seed=10), Context()))[0]
    graph = _submitted(comfy)
    assert (graph["3"]["inputs"]["seed"], graph["11"]["inputs"]["seed"]) == (10, 10)
    second = _read(backend.generate(Request("castle", seed=11), Context()))[0]
    # The final image comes from the hires sampler: had only the first seed been set, these
    # two "different" seeds would give the same picture.
    assert Image.open(io.BytesIO(first)).getpixel((0, 0)) != Image.open(
        io.BytesIO(second)
    ).getpixel((0, 0))


def test_flux_custom_sampler_workflow_detected(comfy, make_backend, tmp_path):
    backend = make_backend(workflow=_workflow(tmp_path, "flux_custom.json"))
    result = backend.generate(Request("aurora", seed=123, steps=8, count=2), Context())
    graph = _submitted(comfy)
    assert graph["20"]["inputs"]["text"] == "aurora"  # found through guider → FluxGuidance
    assert graph["25"]["inputs"]["noise_seed"] == 123
    assert graph["17"]["inputs"]["steps"] == 8
    assert graph["27"]["inputs"]["batch_size"] == 2
    assert len(result.images) == 2


def test_seeds_cover_comfyuis_whole_range(comfy, make_backend):
    backend = make_backend()
    backend.generate(Request("edge", seed=2**64 - 1), Context())
    assert _submitted(comfy)["3"]["inputs"]["seed"] == 2**64 - 1
    backend.generate(Request("random"), Context())
    chosen = _submitted(comfy)["3"]["inputs"]["seed"]
    assert 0 <= chosen <= 2**64 - 1


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"prompt": "Nowhere.text"},
            "no node with id or title 'Nowhere' (nodes: 3 (KSampler), 4 (CheckpointLoaderSimple",
        ),
        (
            {"prompt": "6.txt"},
            "node 6 (CLIPTextEncode \"Positive\") has no input 'txt' (inputs: text, clip)",
        ),
        (
            {"prompt": "3.positive"},
            'is connected to node 6 (CLIPTextEncode "Positive"); map an input of that node',
        ),
        ({"prompt": "6"}, "must look like NODE.input"),
        ({"colour": "6.text"}, "unknown field 'colour'"),
    ],
)
def test_impossible_mappings_name_the_nodes(make_backend, tmp_path, inputs, message):
    with pytest.raises(ConfigError) as raised:
        make_backend(workflow=_workflow(tmp_path, "sdxl_api.json"), inputs=inputs)
    assert message in str(raised.value)
    assert str(raised.value).startswith('backend "gpu": ')


def test_ambiguous_title_and_detection_name_the_nodes(make_backend, tmp_path):
    name = _workflow(tmp_path, "two_subjects.json")
    with pytest.raises(ConfigError) as raised:
        make_backend(workflow=name, inputs={"prompt": "Positive.text"})
    assert (
        'title \'Positive\' is ambiguous: 6 (CLIPTextEncode "Positive") and 16 (CLIPTextEncode "Positive")'
        in str(raised.value)
    )
    with pytest.raises(ConfigError) as raised:
        make_backend(workflow=name)
    assert 'cannot tell which node takes the prompt: 6 (CLIPTextEncode "Positive"), 16' in str(
        raised.value
    )
    assert raised.value.key == "backends.gpu.inputs.prompt"
    make_backend(workflow=name, inputs={"prompt": ["6.text", "16.text"]})  # explicit: fine


def test_ui_format_and_broken_files_are_refused(make_backend, tmp_path):
    with pytest.raises(
        ConfigError, match=r'UI format; export it with the workflow menu.s "Export \(API\)"'
    ):
        make_backend(workflow=_workflow(tmp_path, "ui_format.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken\.json is not JSON"):
        make_backend(workflow="broken.json")
    with pytest.raises(ConfigError, match="does not exist"):
        make_backend(workflow="absent.json")
    with pytest.raises(ConfigError, match="applies to the built-in templates"):
        make_backend(workflow=_workflow(tmp_path, "sdxl_api.json"), model="x.safetensors")


def test_count_without_a_batch_input_is_a_clear_error(make_backend, tmp_path):
    backend = make_backend(
        workflow=_workflow(tmp_path, "sdxl_api.json"), inputs={"prompt": "6.text"}
    )
    # Explicit prompt mapping, the rest detected: batch found.
    backend.generate(Request("x", count=2), Context())
    (tmp_path / "nolatent.json").write_text(
        (WORKFLOWS / "sdxl_api.json")
        .read_text()
        .replace('"batch_size": 1', '"batch_size": ["5", 0]')
    )
    # A batch input fed by a link cannot take the count.
    bare = make_backend(workflow="nolatent.json")
    with pytest.raises(PermanentBackendError, match="no batch size input to make 3 images"):
        bare.generate(Request("x", count=3), Context())

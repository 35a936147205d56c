"""Parameters inside image files: written without re-encoding, read back by other tools."""

from __future__ import annotations

import io
import json
import struct
import zlib

import piexif
import piexif.helper
import pytest
from PIL import Image, PngImagePlugin

from imagen.backends.drawing import render
from imagen.metadata import copy_with_metadata, jpeg, png, webp
from imagen.metadata.a1111 import format_parameters, parse_parameters
from imagen.metadata.exif import build_user_comment, read_user_comment
from imagen.metadata.reader import read_image_info

TEXTS = (
    '{"final_prompt": "fox"}',
    "a fox, snow\nNegative prompt: blur\nSteps: 20, Seed: 5, Size: 64x48",
)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0]
        assert crc == zlib.crc32(kind + body), f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_png_text_is_inserted_without_touching_the_image_data():
    original = render("fox", 5, 64, 48)
    out = io.BytesIO()
    size = copy_with_metadata("image/png", io.BytesIO(original), out, lambda w, h: TEXTS)
    assert size == (64, 48)
    result = out.getvalue()
    before = [body for kind, body in _png_chunks(original) if kind == b"IDAT"]
    after = [body for kind, body in _png_chunks(result) if kind == b"IDAT"]
    assert before == after  # compressed pixels copied byte for byte
    image = Image.open(io.BytesIO(result))
    image.load()
    assert image.info["parameters"] == TEXTS[1]  # what A1111-reading galleries look at
    assert json.loads(image.info["imagen"]) == {"final_prompt": "fox"}
    assert Image.open(io.BytesIO(original)).tobytes() == image.tobytes()


def test_png_unicode_text_uses_itxt_and_replaces_same_keyword():
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "old parameters")
    info.add_text("prompt", '{"3": {}}')
    source = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(source, "PNG", pnginfo=info)
    out = io.BytesIO()
    png.copy_with_text(io.BytesIO(source.getvalue()), out, lambda w, h: {"parameters": "猫 → fox"})
    texts, size = png.read_text(io.BytesIO(out.getvalue()))
    assert texts == {"parameters": "猫 → fox", "prompt": '{"3": {}}'}
    assert size == (8, 8)
    kinds = [kind for kind, _ in _png_chunks(out.getvalue())]
    assert kinds.count(b"iTXt") == 1
    assert kinds.count(b"tEXt") == 1


def test_jpeg_exif_user_comment_reads_back_in_piexif_like_a1111():
    original = render("fox", 5, 64, 48, "jpeg")
    out = io.BytesIO()
    assert copy_with_metadata("image/jpeg", io.BytesIO(original), out, lambda w, h: TEXTS) == (
        64,
        48,
    )
    result = out.getvalue()
    exif = piexif.load(result)
    comment = piexif.helper.UserComment.load(exif["Exif"][piexif.ExifIFD.UserComment])
    assert comment == TEXTS[1]
    # The entropy-coded data after the scan header is untouched.
    assert result[result.index(b"\xff\xda") :] == original[original.index(b"\xff\xda") :]
    assert Image.open(io.BytesIO(result)).tobytes() == Image.open(io.BytesIO(original)).tobytes()


def test_jpeg_existing_exif_is_replaced_not_duplicated():
    source = io.BytesIO()
    exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Camera"}, "Exif": {}})
    Image.new("RGB", (16, 16), "blue").save(source, "JPEG", exif=exif)
    out = io.BytesIO()
    jpeg.copy_with_exif(io.BytesIO(source.getvalue()), out, lambda w, h: build_user_comment("new"))
    assert out.getvalue().count(b"Exif\0\0") == 1
    block, size = jpeg.read_exif(io.BytesIO(out.getvalue()))
    assert read_user_comment(block) == "new"
    assert size == (16, 16)


@pytest.mark.parametrize("lossless", [False, True])
def test_webp_gets_vp8x_and_exif(lossless):
    source = io.BytesIO()
    Image.open(io.BytesIO(render("fox", 5, 70, 30))).save(source, "WEBP", lossless=lossless)
    out = io.BytesIO()
    size = copy_with_metadata("image/webp", io.BytesIO(source.getvalue()), out, lambda w, h: TEXTS)
    assert size == (70, 30)
    data = out.getvalue()
    assert data[12:16] == b"VP8X"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.size == (70, 30)
    raw = image.getexif().get_ifd(piexif.ImageIFD.ExifTag)[piexif.ExifIFD.UserComment]
    assert piexif.helper.UserComment.load(raw) == TEXTS[1]
    assert image.tobytes() == Image.open(io.BytesIO(source.getvalue())).tobytes()
    again = io.BytesIO()
    webp.copy_with_exif(io.BytesIO(data), again, lambda w, h: build_user_comment("second"))
    assert again.getvalue().count(b"EXIF") == 1


def test_very_long_text_is_cut_to_fit_one_jpeg_segment():
    text = "word " * 40_000
    block = build_user_comment(text)
    assert len(block) <= 65_000
    assert read_user_comment(block).endswith("…")


def test_a1111_round_trip_and_quoting():
    text = format_parameters(
        "a fox", "blur", {"Steps": 20, "Seed": 5, "Model": "sd, xl: v1", "Skipped": None}
    )
    assert text == 'a fox\nNegative prompt: blur\nSteps: 20, Seed: 5, Model: "sd, xl: v1"'
    assert parse_parameters(text) == (
        "a fox",
        "blur",
        {"Steps": "20", "Seed": "5", "Model": "sd, xl: v1"},
    )


def test_a1111_real_world_text():
    text = (
        "masterpiece, 1girl, (detailed:1.2)\nsecond line of prompt\n"
        "Negative prompt: lowres, bad anatomy\n"
        "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3938491, Size: 832x1216, "
        'Model hash: 67ab2fd8ec, Model: ponyDiffusionV6XL, Lora hashes: "add_detail: 7c6bad76eb54", '
        "Version: v1.7.0"
    )
    prompt, negative, fields = parse_parameters(text)
    assert prompt == "masterpiece, 1girl, (detailed:1.2)\nsecond line of prompt"
    assert negative == "lowres, bad anatomy"
    assert fields["Sampler"] == "DPM++ 2M Karras"
    assert fields["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert fields["Size"] == "832x1216"


def test_a1111_text_without_parameters_is_all_prompt():
    assert parse_parameters("just a prompt: with a colon") == (
        "just a prompt: with a colon",
        "",
        {},
    )


def test_info_reads_a1111_png_written_by_another_tool(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "castle\nNegative prompt: fog\nSteps: 30, Seed: 77, Size: 32x16")
    path = tmp_path / "a1111.png"
    Image.new("RGB", (32, 16)).save(path, pnginfo=info)
    found = read_image_info(path)
    assert found.source == "a1111"
    assert found.fields["prompt"] == "castle"
    assert found.fields["seed"] == 77
    assert (found.fields["width"], found.fields["height"]) == (32, 16)
    assert found.replay()["steps"] == 30


def test_info_reads_a1111_jpeg_exif_written_by_piexif(tmp_path):
    path = tmp_path / "a1111.jpg"
    comment = piexif.helper.UserComment.dump(
        "harbor\nSteps: 12, Seed: 9, Size: 16x16", encoding="unicode"
    )
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: comment}})
    Image.new("RGB", (16, 16)).save(path, "JPEG", exif=exif)
    found = read_image_info(path)
    assert found.source == "a1111"
    assert (found.fields["prompt"], found.fields["seed"], found.fields["steps"]) == (
        "harbor",
        9,
        12,
    )


COMFY_GRAPH = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 1024, "height": 768, "batch_size": 2},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red barn", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark", "clip": ["4", 1]}},
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 99,
            "steps": 25,
            "cfg": 6.5,
            "sampler_name": "euler",
            "scheduler": "normal",
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
}


def test_info_reads_comfyui_prompt_chunk(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(COMFY_GRAPH))
    info.add_text("workflow", json.dumps({"nodes": [], "links": []}))
    path = tmp_path / "ComfyUI_00001_.png"
    Image.new("RGB", (16, 16)).save(path, pnginfo=info)
    found = read_image_info(path)
    assert found.source == "comfyui"
    fields = found.fields
    assert (fields["prompt"], fields["negative_prompt"]) == ("a red barn", "watermark")
    assert (fields["seed"], fields["steps"], fields["cfg"]) == (99, 25, 6.5)
    assert (fields["width"], fields["height"], fields["count"]) == (1024, 768, 2)
    assert fields["model"] == "sdxl.safetensors"


def test_info_flux_graph_follows_guidance_and_random_noise(tmp_path):
    graph = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-schnell.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "neon city", "clip": ["9", 0]}},
        "3": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["2", 0], "guidance": 3.5}},
        "4": {"class_type": "BasicGuider", "inputs": {"conditioning": ["3", 0], "model": ["1", 0]}},
        "5": {"class_type": "RandomNoise", "inputs": {"noise_seed": 4242}},
        "6": {"class_type": "BasicScheduler", "inputs": {"steps": 4, "model": ["1", 0]}},
        "7": {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": 512, "height": 512, "batch_size": 1},
        },
        "8": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["5", 0],
                "guider": ["4", 0],
                "sigmas": ["6", 0],
                "latent_image": ["7", 0],
            },
        },
    }
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph))
    path = tmp_path / "flux.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    fields = read_image_info(path).fields
    assert (fields["prompt"], fields["seed"], fields["steps"]) == ("neon city", 4242, 4)
    assert fields["model"] == "flux1-schnell.safetensors"


def test_info_on_plain_and_non_images(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(plain)
    found = read_image_info(plain)
    assert found.source is None
    assert found.width == 4
    text = tmp_path / "notes.png"
    text.write_text("hello")
    from imagen import RequestError

    with pytest.raises(RequestError, match="is not a PNG, JPEG or WebP image"):
        read_image_info(text)
    with pytest.raises(RequestError, match="carries no generation parameters"):
        found.replay()


def test_sampler_cfg_scale_and_model_hash_reach_the_a1111_text():
    from imagen.metadata.a1111 import parse_parameters
    from imagen.metadata.record import parameters_text

    record = {
        "final_prompt": "a lighthouse",
        "final_negative_prompt": "",
        "steps": 20,
        "seed": 7,
        "image_seed": 7,
        "width": 512,
        "height": 512,
        "backend": "webui",
        "backend_type": "sdwebui",
        "imagen_version": "0.1.0",
        "metadata": {
            "model": "sd_xl_base_1.0",
            "model_hash": "31e35c80fc",
            "sampler": "DPM++ 2M",
            "scheduler": "Karras",
            "cfg_scale": 6.5,
            "cfg": 9,  # ComfyUI's name: cfg_scale came first and wins
            "unrelated": "kept in the sidecar only",
        },
    }
    _, _, fields = parse_parameters(parameters_text(record))
    assert fields["Model"] == "sd_xl_base_1.0"
    assert fields["Model hash"] == "31e35c80fc"
    assert fields["Sampler"] == "DPM++ 2M"
    assert fields["Schedule type"] == "Karras"
    assert fields["CFG scale"] == "6.5"
    assert "unrelated" not in parameters_text(record)
    del record["metadata"]["cfg_scale"]
    _, _, fields = parse_parameters(parameters_text(record))
    assert fields["CFG scale"] == "9"

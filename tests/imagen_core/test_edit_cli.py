"""Images in: --image, --mask, --reference, --strength and imagen edit, with the mock backend."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from imagen import Backend, GeneratedImage, Result, hookimpl
from imagen.backends.drawing import render
from imagen.inputs import InputSupport


def _png(path: Path, size=(96, 64), colour=(10, 200, 30), mode="RGB") -> Path:
    Image.new(mode, size, colour).save(path)
    return path


def _half_mask(path: Path, size=(96, 64)) -> Path:
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))  # repaint the left half only
    mask.save(path)
    return path


def _pixels(path: Path) -> Image.Image:
    with Image.open(path) as picture:
        return picture.convert("RGB")


def _generate(home, *args: str, **kwargs):
    return home.run("generate", *args, "-o", str(home.root / "out"), **kwargs)


def test_an_edit_keeps_the_input_where_the_mask_says_and_records_every_input(home):
    image = _png(home.root / "photo.png")
    mask = _half_mask(home.root / "mask.png")
    proc = _generate(
        home, "a cat", "--image", str(image), "--mask", str(mask), "--strength", "0.9", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    (saved,) = json.loads(proc.stdout)["images"]
    out = _pixels(Path(saved["path"]))
    assert out.size == (96, 64)  # the input's size: no --size given
    assert out.getpixel((90, 30)) == (10, 200, 30)  # kept: outside the mask
    assert out.getpixel((5, 30)) != (10, 200, 30)  # repainted inside it
    record = json.loads(Path(saved["sidecar"]).read_text())
    assert record["strength"] == 0.9
    roles = [(item["role"], item["path"], item["width"]) for item in record["inputs"]]
    assert roles == [("image", str(image), 96), ("mask", str(mask), 96)]
    with Image.open(saved["path"]) as picture:
        assert "Denoising strength: 0.9" in picture.info["parameters"]
    shown = home.run("info", saved["path"], check=True).stdout
    assert "strength:    0.9" in shown
    assert f"input image: {image} (96×64" in shown


def test_strength_zero_gives_the_input_back_and_one_the_placeholder(home):
    image = _png(home.root / "photo.png", size=(64, 64))
    kept = json.loads(
        _generate(home, "x", "--image", str(image), "--strength", "0", "--json", check=True).stdout
    )
    assert _pixels(Path(kept["images"][0]["path"])).getcolors() == [(64 * 64, (10, 200, 30))]
    fresh = json.loads(
        _generate(
            home, "x", "--image", str(image), "--strength", "1", "--seed", "3", "--json", check=True
        ).stdout
    )
    placeholder = home.root / "placeholder.png"
    placeholder.write_bytes(render("x", 3, 64, 64))
    assert _pixels(Path(fresh["images"][0]["path"])).tobytes() == _pixels(placeholder).tobytes()


def test_references_arrive_in_order(home):
    red = _png(home.root / "red.png", colour=(250, 0, 0))
    blue = _png(home.root / "blue.png", colour=(0, 0, 250))
    proc = _generate(
        home, "x", "--size", "80x80", "--reference", str(red), "--reference", str(blue), "--json"
    )
    out = _pixels(Path(json.loads(proc.stdout)["images"][0]["path"]))
    assert out.getpixel((5, 75)) == (250, 0, 0)  # swatch 1, bottom left
    assert out.getpixel((15, 75)) == (0, 0, 250)  # swatch 2 beside it


def test_imagen_edit_is_generate_with_image_and_reads_standard_input(home):
    image = _png(home.root / "photo.png")
    with image.open("rb") as stdin:
        edited = home.run(
            "edit", "-", "a dog", "--seed", "5", "-o", str(home.root / "a"), "--json",
            stdin=stdin,
        )  # fmt: skip
    assert edited.returncode == 0, edited.stderr
    generated = _generate(home, "a dog", "--image", str(image), "--seed", "5", "--json", check=True)
    one = Path(json.loads(edited.stdout)["images"][0]["path"])
    two = Path(json.loads(generated.stdout)["images"][0]["path"])
    assert one.read_bytes() != b""
    assert _pixels(one).tobytes() == _pixels(two).tobytes()
    record = json.loads(one.with_suffix(".json").read_text())
    assert record["inputs"][0]["name"] == "-"
    assert "path" not in record["inputs"][0]  # standard input has no path to find again


def _bomb(path: Path) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda root: _bomb(root / "bomb.png"), ["--image", "{}"], "decodes to far more than"),
        (
            lambda root: (root / "notes.png").write_text("hello") and root / "notes.png",
            ["--image", "{}"],
            "not a PNG, JPEG or WebP image",
        ),
        (
            lambda root: _half_mask(root / "small.png", size=(10, 10)),
            ["--image", "PHOTO", "--mask", "{}"],
            "the mask is 10×10, its image PHOTO is 96×64: they must be the same size",
        ),
        (
            lambda root: _png(root / "ref.png"),
            ["--reference", "{}"] * 5,
            'backend "mock" takes at most 4 reference inputs, not 5',
        ),
        (
            lambda root: _png(root / "one.png"),
            ["--image", "{}", "--image", "{}"],
            'backend "mock" takes at most 1 image input, not 2',
        ),
        (lambda root: root / "missing.png", ["--image", "{}"], "cannot read it"),
    ],
    ids=["bomb", "not-an-image", "mask-size", "too-many-references", "two-images", "missing"],
)
def test_bad_inputs_are_one_line_exit_2_and_leave_nothing(home, make, args, message):
    photo = _png(home.root / "photo.png")
    path = make(home.root)
    argv = [a.replace("{}", str(path)).replace("PHOTO", str(photo)) for a in args]
    proc = _generate(home, "x", *argv)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert message.replace("PHOTO", str(photo)) in proc.stderr
    assert not (home.root / "out").exists()


class _TextOnly(Backend):
    def generate(self, request, context):
        return Result([GeneratedImage.from_bytes(render("x", 1, 16, 16), "image/png")])


class _NoStrength(_TextOnly):
    def input_support(self):
        return InputSupport(images=1)


@pytest.fixture
def limited(register_plugin):
    class Plugin:
        @staticmethod
        @hookimpl
        def imagen_backend():
            return {"textonly": _TextOnly, "nostrength": _NoStrength}

    register_plugin(Plugin(), "limited-test")


def test_a_backend_that_takes_no_images_is_never_called_with_one(cli, home, limited):
    home.write_config("backends:\n  t:\n    type: textonly\n  n:\n    type: nostrength\n")
    photo = _png(home.root / "photo.png")
    refused = cli("generate", "x", "-b", "t", "--image", str(photo), "-o", str(home.root / "out"))
    assert refused.exit_code == 2
    assert 'backend "t" takes no input images' in refused.output
    ignored = cli(
        "generate", "x", "-b", "n", "--image", str(photo), "--strength", "0.5",
        "-o", str(home.root / "out"),
    )  # fmt: skip
    assert ignored.exit_code == 0, ignored.output
    assert 'backend "n" ignored: strength' in ignored.output


def test_from_replays_an_edit_finding_its_inputs_by_path_then_by_hash(home):
    photo = _png(home.root / "photo.png")
    first = json.loads(
        _generate(home, "a cat", "--image", str(photo), "--seed", "9", "--json", check=True).stdout
    )
    made = first["images"][0]["path"]
    again = json.loads(_generate(home, "--from", made, "--json", check=True).stdout)
    assert _pixels(Path(again["images"][0]["path"])).tobytes() == _pixels(Path(made)).tobytes()

    moved = home.root / "out" / "kept" / "photo-copy.png"
    moved.parent.mkdir()
    photo.rename(moved)  # gone from its recorded path, but in the output directory
    found = _generate(home, "--from", made, "--json", check=True)
    record = json.loads(Path(json.loads(found.stdout)["images"][0]["sidecar"]).read_text())
    assert record["inputs"][0]["path"] == str(moved)

    moved.unlink()
    lost = _generate(home, "--from", made)
    assert lost.returncode == 2
    assert f"--from: cannot find {photo} (image, sha256" in lost.stderr
    assert "give the inputs again with --image/--reference/--mask" in lost.stderr

"""Input images are untrusted: each is checked, by its own bytes, before anything reads it."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from imagen.errors import RequestError
from imagen.inputs import MAX_INPUTS, check_inputs, load_input, spool


def _png(path: Path, size=(32, 24), mode="RGB", colour=(200, 30, 30)) -> Path:
    Image.new(mode, size, colour).save(path, "PNG")
    return path


def _bomb(path: Path, side: int = 50_000) -> Path:
    """A small PNG whose header says it decodes to side × side pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # greyscale
    rows = zlib.compress(b"\0" * 1024, 9)  # a fraction of the first row: enough to look real
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )
    return path


def test_a_good_input_is_measured_typed_and_hashed(tmp_path):
    path = _png(tmp_path / "photo.png")
    item = load_input(path, "image")
    assert (item.role, item.name, item.mime_type, item.width, item.height) == (
        "image",
        "photo.png",
        "image/png",
        32,
        24,
    )
    assert item.size == path.stat().st_size
    assert item.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with item.open() as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"
    assert item.record() == {
        "role": "image",
        "name": "photo.png",
        "mime_type": "image/png",
        "width": 32,
        "height": 24,
        "size": item.size,
        "sha256": item.sha256,
    }


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_are_inputs_too(tmp_path, fmt):
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.new("RGB", (20, 10), (1, 2, 3)).save(path, fmt)
    assert (load_input(path).width, load_input(path).height) == (20, 10)


def test_a_decompression_bomb_is_refused_by_its_header(tmp_path):
    path = _bomb(tmp_path / "bomb.png")
    assert path.stat().st_size < 2000
    with pytest.raises(RequestError) as raised:
        load_input(path, name="bomb.png")
    assert str(raised.value) == (
        "bomb.png: decodes to far more than the 67,108,864 pixels an input may have "
        "(a decompression bomb)"
    )


def test_a_large_but_legal_header_past_imagens_own_limit_is_refused(tmp_path):
    path = _bomb(tmp_path / "wide.png", side=9000)  # 81 MP: PIL would allow it, imagen doesn't
    with pytest.raises(RequestError, match=r"^wide\.png: 9000×9000 is 81,000,000 pixels, more"):
        load_input(path, name="wide.png")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a PNG, JPEG or WebP image"),
        (b"hello, world", "not a PNG, JPEG or WebP image"),
        (b"GIF89a" + b"\0" * 40, "not a PNG, JPEG or WebP image"),
        (b"%PDF-1.7\n" + b"x" * 100, "not a PNG, JPEG or WebP image"),
    ],
)
def test_what_is_not_an_image_is_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "notes.png"
    path.write_bytes(content)
    with pytest.raises(RequestError) as raised:
        load_input(path)
    assert str(raised.value) == f"notes.png: {message}".replace("notes.png", str(path), 1)


def test_a_truncated_png_is_refused(tmp_path):
    path = _png(tmp_path / "cut.png", size=(64, 64))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(RequestError, match="a damaged image"):
        load_input(path, name="cut.png")


def test_too_large_a_file_is_refused_before_it_is_read(tmp_path):
    path = _png(tmp_path / "big.png", size=(64, 64))
    with pytest.raises(RequestError, match=r"^big\.png: 0\.0 MB, more than the 0\.0 MB"):
        load_input(path, name="big.png", max_bytes=100)


def test_a_missing_file_and_a_bad_role_say_so(tmp_path):
    with pytest.raises(RequestError, match=r"nope\.png: cannot read it"):
        load_input(tmp_path / "nope.png", name="nope.png")
    with pytest.raises(RequestError, match="unknown input role 'style'"):
        load_input(_png(tmp_path / "a.png"), "style")


def test_a_mask_must_match_its_image_and_needs_one(tmp_path):
    image = load_input(_png(tmp_path / "photo.png", size=(32, 24)), "image")
    mask = load_input(_png(tmp_path / "mask.png", size=(16, 16), mode="RGBA"), "mask")
    with pytest.raises(RequestError) as raised:
        check_inputs([image, mask])
    assert str(raised.value) == (
        "mask.png: the mask is 16×16, its image photo.png is 32×24: they must be the same size"
    )
    with pytest.raises(RequestError, match="a mask needs an image"):
        check_inputs([mask])
    fitting = load_input(_png(tmp_path / "fit.png", size=(32, 24), mode="RGBA"), "mask")
    check_inputs([image, fitting])


def test_at_most_sixteen_inputs(tmp_path):
    one = load_input(_png(tmp_path / "r.png"), "reference")
    check_inputs([one] * MAX_INPUTS)
    with pytest.raises(RequestError, match="17 input images, more than the 16 allowed"):
        check_inputs([one] * (MAX_INPUTS + 1))


def test_standard_input_is_spooled_to_a_file_with_a_limit(tmp_path):
    data = _png(tmp_path / "src.png").read_bytes()
    path = spool(io.BytesIO(data), tmp_path)
    assert path.read_bytes() == data
    with pytest.raises(RequestError, match="more than the"):
        spool(io.BytesIO(data), tmp_path, max_bytes=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["src.png", path.name])


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=4096),
    head=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\0\0\0\0WEBP"]),
)
def test_any_bytes_are_either_an_input_or_one_clear_refusal(tmp_path_factory, data, head):
    path = tmp_path_factory.mktemp("fuzz") / "input"
    path.write_bytes(head + data)
    try:
        item = load_input(path)
    except RequestError as exc:
        refusal = str(exc)
    else:
        assert item.width >= 1
        assert item.height >= 1
        return
    assert "\n" not in refusal
    assert refusal.startswith(str(path))


def test_an_input_whose_file_is_gone_says_so_when_opened(tmp_path):
    from PIL import Image

    from imagen.errors import RequestError
    from imagen.inputs import load_input

    path = tmp_path / "gone.png"
    Image.new("RGB", (8, 8)).save(path)
    image = load_input(path)
    path.unlink()
    with pytest.raises(
        RequestError, match=r"input image gone.png: cannot read .*gone.png any more"
    ):
        image.open()

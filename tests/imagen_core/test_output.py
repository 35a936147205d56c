"""File naming, atomic no-clobber writes, sidecars."""

from __future__ import annotations

import io
import json
import os
from datetime import datetime

import pytest

from imagen import OutputError, TransientBackendError
from imagen.backends.drawing import render
from imagen.naming import NamingTemplate, slugify
from imagen.output import write_image

WHEN = datetime(2026, 11, 25, 14, 25, 1)


@pytest.mark.parametrize(
    ("prompt", "slug"),
    [
        ("A Cat, in Space!", "a-cat-in-space"),
        ("  crème   brûlée -- close-up ", "creme-brulee-close-up"),
        ("日本の庭", "image"),
        ("x" * 60, "x" * 40),
        ("word " * 20, "word-word-word-word-word-word-word-word"),
    ],
)
def test_slug(prompt, slug):
    assert slugify(prompt) == slug
    assert len(slugify(prompt)) <= 40


def test_template_renders_every_placeholder():
    template = NamingTemplate("{date}/{time}-{slug}-{seed}-{backend}-{index:02d}.{ext}")
    path = template.render(
        when=WHEN, prompt="Red Fox", seed=7, backend="gpu/box", ext="png", index=3
    )
    assert str(path) == "2026-11-25/142501-red-fox-7-gpu-box-03.png"


def test_date_and_time_take_strftime_formats():
    template = NamingTemplate("{date:%Y/%m}/{time:%H-%M}-{slug}.{ext}")
    path = template.render(when=WHEN, prompt="fox", seed=1, backend="b", ext="png", index=1)
    assert str(path) == "2026/11/14-25-fox.png"


def test_literal_extension_follows_the_real_format():
    template = NamingTemplate("{slug}.png")
    path = template.render(when=WHEN, prompt="fox", seed=1, backend="b", ext="jpg", index=1)
    assert str(path) == "fox.jpg"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{slug}/../../{seed}.png", "must not leave the output directory"),
        ("/abs/{slug}.png", "must be relative"),
        ("~/x.png", "must be relative"),
        ("{nope}.png", "unknown placeholder {nope}"),
        ("{slug", "malformed template"),
        ("", "empty"),
    ],
)
def test_bad_templates_are_refused(template, message):
    with pytest.raises(ValueError, match=message):
        NamingTemplate(template)


def _record(width, height, mime):
    return {
        "prompt": "p",
        "final_prompt": "p",
        "width": width,
        "height": height,
        "mime_type": mime,
        "seed": 1,
        "metadata": {},
    }


def test_existing_files_are_never_overwritten(tmp_path):
    data = render("fox", 1, 64, 64)
    target = tmp_path / "fox.png"
    target.write_bytes(b"precious")
    first = write_image(io.BytesIO(data), "image/png", target, _record)
    second = write_image(io.BytesIO(data), "image/png", target, _record)
    assert target.read_bytes() == b"precious"
    assert first.path == tmp_path / "fox-1.png"
    assert second.path == tmp_path / "fox-2.png"
    assert first.sidecar == tmp_path / "fox-1.json"
    assert json.loads(first.sidecar.read_text())["width"] == 64


def test_a_name_whose_sidecar_is_taken_is_skipped(tmp_path):
    (tmp_path / "fox.json").write_text("{}")
    saved = write_image(
        io.BytesIO(render("fox", 1, 32, 32)), "image/png", tmp_path / "fox.png", _record
    )
    assert saved.path.name == "fox-1.png"
    assert (tmp_path / "fox.json").read_text() == "{}"


class _Exploding(io.RawIOBase):
    """A stream that fails after ``good`` bytes, like a dropped download."""

    def __init__(self, data: bytes, good: int) -> None:
        self._data = io.BytesIO(data)
        self._left = good

    def readable(self):
        return True

    def readinto(self, buffer):
        if self._left <= 0:
            raise ConnectionResetError("connection dropped")
        chunk = self._data.read(min(len(buffer), self._left, 4096))
        self._left -= len(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_a_failing_stream_leaves_no_file_behind(tmp_path):
    data = render("fox", 1, 256, 256)
    with pytest.raises(TransientBackendError, match="reading the image from the backend failed"):
        write_image(
            io.BufferedReader(_Exploding(data, len(data) // 2)),
            "image/png",
            tmp_path / "fox.png",
            _record,
        )
    assert os.listdir(tmp_path) == []


def test_a_corrupt_image_is_an_output_error_and_leaves_nothing(tmp_path):
    data = render("fox", 1, 64, 64)[:100]  # cut inside the PNG
    with pytest.raises(OutputError, match="not a valid image/png"):
        write_image(io.BytesIO(data), "image/png", tmp_path / "fox.png", _record)
    assert os.listdir(tmp_path) == []


def test_mislabelled_bytes_are_saved_as_what_they_are(tmp_path):
    data = render("fox", 1, 64, 64, "jpeg")
    saved = write_image(io.BytesIO(data), "image/png", tmp_path / "fox.png", _record)
    assert saved.path.name == "fox.jpg"
    assert saved.mime_type == "image/jpeg"
    assert any("said image/png but sent image/jpeg" in note for note in saved.notes)


def test_unwritable_directory_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write to"):
        write_image(
            io.BytesIO(render("f", 1, 32, 32)), "image/png", blocker / "sub" / "f.png", _record
        )


def test_files_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        saved = write_image(
            io.BytesIO(render("f", 1, 32, 32)), "image/png", tmp_path / "f.png", _record
        )
    finally:
        os.umask(old)
    assert saved.path.stat().st_mode & 0o777 == 0o644

"""The built-in offline backend, type ``mock``."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image, ImageChops, ImageStat

from imagen import (
    BackendConfig,
    Cancelled,
    ConfigError,
    Context,
    PermanentBackendError,
    Progress,
    Request,
    TransientBackendError,
)
from imagen.backends.mock import MockBackend
from imagen.registry import backend_types


def _backend(**settings) -> MockBackend:
    return MockBackend(BackendConfig("mock", "mock", settings))


def _bytes(result) -> list[bytes]:
    return [image.stream.read() for image in result.images]


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_registered_through_the_entry_point():
    kind = backend_types()["mock"]
    assert kind.distribution == "imagen-core"
    assert kind.plugin == "builtin"


def test_same_request_gives_byte_identical_png():
    request = Request("a red fox in snow", seed=1234, width=256, height=192)
    first = _bytes(_backend().generate(request, Context()))
    second = _bytes(_backend().generate(request, Context()))
    assert first == second
    image = _decode(first[0])
    assert image.format == "PNG"
    assert image.size == (256, 192)


def _difference(a: bytes, b: bytes) -> float:
    diff = ImageChops.difference(_decode(a).convert("RGB"), _decode(b).convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


def test_other_seed_or_prompt_gives_a_visibly_different_picture():
    base = _bytes(_backend().generate(Request("lighthouse", seed=1), Context()))[0]
    other_seed = _bytes(_backend().generate(Request("lighthouse", seed=2), Context()))[0]
    other_prompt = _bytes(_backend().generate(Request("meadow", seed=1), Context()))[0]
    # Mean absolute channel difference: identical pictures give 0; these differ throughout.
    assert _difference(base, other_seed) > 10
    assert _difference(base, other_prompt) > 10


def test_picture_is_not_flat():
    data = _bytes(_backend().generate(Request("texture check", seed=9), Context()))[0]
    image = _decode(data).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000)
    assert colours is not None
    assert len(colours) > 500
    assert max(ImageStat.Stat(image).stddev) > 20


def test_count_gives_that_many_images_with_consecutive_seeds():
    result = _backend().generate(Request("cats", seed=10, count=3), Context())
    assert [image.seed for image in result.images] == [10, 11, 12]
    datas = _bytes(result)
    assert len(set(datas)) == 3
    single = _bytes(_backend().generate(Request("cats", seed=11), Context()))[0]
    assert datas[1] == single  # image 2 of the batch is remade alone by its own seed


@pytest.mark.parametrize(("fmt", "pil_format"), [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_other_formats(fmt, pil_format):
    result = _backend().generate(Request("x", seed=1, options={"format": fmt}), Context())
    assert result.images[0].mime_type == f"image/{fmt}"
    assert _decode(_bytes(result)[0]).format == pil_format


def test_size_bounds_are_clear_errors():
    with pytest.raises(PermanentBackendError, match="width 5000 is out of bounds"):
        _backend().generate(Request("x", width=5000), Context())
    with pytest.raises(ConfigError, match="between 16 and 4096"):
        _backend(height=8)
    with pytest.raises(ConfigError, match='unknown key "colour"'):
        _backend(colour="red")


def test_ignored_fields_are_listed():
    request = Request("x", seed=1, negative_prompt="blur", steps=30, options={"cfg": 7})
    result = _backend().generate(request, Context())
    assert sorted(result.metadata["ignored"]) == ["negative_prompt", "options.cfg", "steps"]
    plain = _backend().generate(Request("x", seed=1), Context())
    assert "ignored" not in plain.metadata


def test_delay_reports_ordered_progress():
    seen: list[Progress] = []
    request = Request("x", seed=1, steps=5, options={"delay": 0.3})
    _backend().generate(request, Context(on_progress=seen.append))
    kinds = [p.kind for p in seen]
    assert kinds[0] == "started"
    assert kinds[-1] == "finished"
    steps = [p.current for p in seen if p.kind == "step"]
    assert steps == sorted(steps)
    assert steps[-1] == 5
    assert all(p.total == 5 for p in seen if p.kind == "step")


def test_delay_honours_cancellation_promptly():
    context = Context()
    threading.Timer(0.1, context.cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        _backend().generate(Request("x", options={"delay": 3600}), context)
    assert time.monotonic() - started < 60  # not the hour it would take otherwise


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("config", ConfigError),
        ("transient", TransientBackendError),
        ("permanent", PermanentBackendError),
    ],
)
def test_fail_option(mode, error):
    with pytest.raises(error, match=f"fail={mode}"):
        _backend().generate(Request("x", options={"fail": mode}), Context())


def test_bad_options_are_permanent_errors():
    with pytest.raises(PermanentBackendError, match="delay must be a number"):
        _backend().generate(Request("x", options={"delay": "soon"}), Context())
    with pytest.raises(PermanentBackendError, match="fail must be one of"):
        _backend().generate(Request("x", options={"fail": "sometimes"}), Context())

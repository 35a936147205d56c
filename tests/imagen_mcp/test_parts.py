"""The parts the end-to-end tests lean on: the progress scale, the limit, the shelf."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagen.context import Progress
from imagen_mcp.images import ImageShelf, NotAnImage
from imagen_mcp.limits import ImageLimit, LimitReached
from imagen_mcp.progress import TOTAL, scale

progresses = st.one_of(
    st.builds(
        Progress, st.sampled_from(["queued", "started", "status", "downloading", "finished"])
    ),
    st.integers(1, 50).flatmap(
        lambda total: st.builds(Progress, st.just("step"), st.integers(0, total), st.just(total))
    ),
    st.builds(Progress, st.just("step"), st.integers(0, 99) | st.none()),
    st.builds(Progress, st.just("status"), message=st.text(max_size=10)),
)


@given(st.lists(progresses, max_size=60))
def test_progress_only_grows_and_stays_below_the_end(reports):
    last = 0.0
    for report in reports:
        value, text = scale(report, last)
        assert last < value < TOTAL
        assert text
        last = value


def test_a_second_images_steps_do_not_go_back():
    first, _ = scale(Progress("step", 10, 10), 0.0)
    again, text = scale(Progress("step", 1, 10), first)
    assert again > first
    assert text == "step 1 of 10"


def test_the_limit_holds_what_running_calls_reserved():
    limit = ImageLimit(5)
    limit.reserve("s", 3)
    with pytest.raises(LimitReached, match=r"made 3 of its 5 images.*at most 2 more"):
        limit.reserve("s", 3)
    limit.settle("s", 3, 1)  # the call made one image of the three it held
    limit.reserve("s", 4)
    assert limit.used("s") == 5
    limit.reserve("other", 5)
    assert ImageLimit(0).reserve("s", 10**6) is None  # 0: no limit


def test_the_shelf_reads_only_under_its_directory(tmp_path: Path):
    pictures = tmp_path / "pictures"
    (pictures / "sub").mkdir(parents=True)
    inside = pictures / "sub" / "a b.png"
    inside.write_bytes(b"png")
    (tmp_path / "secret.png").write_bytes(b"secret")
    shelf = ImageShelf(pictures, keep=5)
    uri = shelf.uri(inside)
    assert uri == "imagen://images/sub/a%20b.png"
    assert shelf.read(uri, "anyone") == (b"png", "image/png")
    for bad in (
        "imagen://images/../secret.png",
        "imagen://images/sub/../../secret.png",
        f"imagen://images/{tmp_path}/secret.png",
        "imagen://images/sub/a%00b.png",
        "imagen://images/",
        "file:///etc/passwd",
    ):
        with pytest.raises(NotAnImage):
            shelf.read(bad, "anyone")
    assert shelf.uri(tmp_path / "secret.png") is None


def test_a_scoped_shelf_keeps_callers_apart(tmp_path: Path):
    image = tmp_path / "x.png"
    image.write_bytes(b"png")
    shelf = ImageShelf(tmp_path, keep=5, scoped=True)
    uri = shelf.uri(image)
    with pytest.raises(NotAnImage, match="no image at"):
        shelf.read(uri, "alice")  # not made through this server: nobody's
    shelf.add(image, "alice")
    assert shelf.read(uri, "alice")[0] == b"png"
    assert shelf.recent("alice") == [image.resolve()]
    assert shelf.recent("bob") == []
    with pytest.raises(NotAnImage, match="no image at"):
        shelf.read(uri, "bob")


def _reader(tmp_path: Path, max_bytes: int = 100_000):
    from imagen_mcp.inputs import InputReader

    pictures = tmp_path / "pictures"
    pictures.mkdir(exist_ok=True)
    return InputReader(ImageShelf(pictures, 5), [], max_bytes, "local")


@given(
    st.one_of(
        st.text(min_size=1, max_size=400),
        st.binary(min_size=1, max_size=4096).map(
            lambda data: __import__("base64").b64encode(data).decode()
        ),
        st.binary(max_size=600).map(
            lambda data: __import__("base64").b64encode(b"\x89PNG\r\n\x1a\n" + data).decode()
        ),
    )
)
def test_the_reader_refuses_garbage_data_and_leaves_no_file(tmp_path_factory, garbage):
    from mcp.server.mcpserver.exceptions import ToolError

    from imagen_mcp.inputs import ImageInput

    tmp_path = tmp_path_factory.mktemp("reader")
    reader = _reader(tmp_path)
    with reader, pytest.raises(ToolError, match=r"^inputs\[0\]: [^\n]+$"):
        reader.read([ImageInput(data=garbage)])
    assert reader._scratch is None  # the scratch directory went with the reader


def test_the_reader_bounds_data_before_decoding_it(tmp_path: Path, monkeypatch):
    import base64

    from mcp.server.mcpserver.exceptions import ToolError

    from imagen_mcp import inputs

    decoded = []
    monkeypatch.setattr(inputs.base64, "b64decode", lambda *a, **k: decoded.append(a) or b"")
    with (
        _reader(tmp_path, max_bytes=3000) as reader,
        pytest.raises(ToolError, match="4,004 characters"),
    ):
        reader.read([inputs.ImageInput(data=base64.b64encode(bytes(3001)).decode())])
    assert decoded == []  # refused by its length alone


def test_input_roots_must_be_absolute(home):
    from imagen.config import load_config
    from imagen.errors import ConfigError
    from imagen_mcp.settings import read_mcp

    path = home.write_config("mcp:\n  input_roots: [relative/dir]\n")
    with pytest.raises(ConfigError, match=r"absolute") as raised:
        read_mcp(load_config(path))
    assert "input_roots[0]" in str(raised.value)
    path = home.write_config("mcp:\n  input_max_bytes: 60000000\n")
    with pytest.raises(ConfigError, match="input_max_bytes"):
        read_mcp(load_config(path))
    path = home.write_config("mcp:\n  input_roots: [/srv/images]\n")
    assert read_mcp(load_config(path)).input_roots == (Path("/srv/images"),)

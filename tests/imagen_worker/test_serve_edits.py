"""POST /v1/images/edits through imagen serve and a worker, driven by the official openai SDK."""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from worker_helpers import running, serving

from imagen.config import parse_config
from imagen.yamlfile import Located
from imagen_worker.serve.app import create_app
from imagen_worker.serve.settings import ServeSettings, hash_key

ALICE_KEY = "imk_alice-edit-key"
BOB_KEY = "imk_bob-edit-key"


@pytest.fixture
def inputs(tmp_path) -> Path:
    return tmp_path / "inputs"


@pytest.fixture
def server(db_url, tmp_path, inputs) -> Iterator[str]:
    config = parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out"), "write_metadata_json": False},
                "backends": {"mock": {"type": "mock"}},
                "serve": {"inputs_dir": str(inputs)},
            }
        )
    )
    settings = ServeSettings(
        api_keys={hash_key(ALICE_KEY): "alice", hash_key(BOB_KEY): "bob"},
        wait_s=30,
        max_images=4,
        max_upload_bytes=8 * 1024 * 1024,
    )
    app = create_app(config, db_url, settings, thumbnails=tmp_path / "thumbnails")
    with serving(app) as url, running(config, db_url):
        yield url


def _client(server: str, key: str = ALICE_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0)


def _png(width: int, height: int, color=(200, 30, 30, 255)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), color).save(out, "PNG")
    return out.getvalue()


def _pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.convert("RGBA").tobytes()


def _files(inputs: Path) -> list[Path]:
    return [path for path in inputs.rglob("*") if path.is_file()] if inputs.exists() else []


def _jobs(conn) -> int:
    return conn.execute("SELECT count(*) FROM imagen.jobs").fetchone()[0]


def test_the_sdks_images_edit_edits_through_the_builtin_backend(server, conn, inputs):
    source = _png(40, 30)
    with _client(server) as client:
        result = client.images.edit(
            model="mock",
            image=("photo.png", source, "image/png"),
            prompt="keep it as it is",
            extra_body={"strength": "0"},
        )
    made = base64.b64decode(result.data[0].b64_json)
    # strength 0: the mock keeps the input exactly, at the input's size
    assert _pixels(made) == _pixels(source)
    assert result.size == "40x30"
    job = conn.execute("SELECT inputs, strength FROM imagen.jobs").fetchone()
    digest = hashlib.sha256(source).hexdigest()
    assert job == ([{"role": "image", "upload": digest, "name": "photo.png"}], 0.0)
    metadata = conn.execute("SELECT metadata FROM imagen.images").fetchone()[0]
    assert metadata["inputs"] == [
        {"role": "image", "name": "photo.png", "size": len(source), "sha256": digest,
         "width": 40, "height": 30}
    ]  # fmt: skip
    assert metadata["strength"] == 0.0
    (kept,) = _files(inputs)
    assert kept.name == digest  # in alice's folder, by its hash
    assert kept.read_bytes() == source


def test_a_mask_limits_the_edit_and_references_pass_as_image_list(server, conn):
    source = _png(32, 32)
    mask = Image.new("RGBA", (32, 32), (0, 0, 0, 255))  # opaque black: edit nothing ...
    for x in range(16):
        for y in range(32):
            mask.putpixel((x, y), (0, 0, 0, 0))  # ... but the transparent left half
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    with _client(server) as client:
        result = client.images.edit(
            model="mock",
            image=[("a.png", source, "image/png")],
            mask=("m.png", buffer.getvalue(), "image/png"),
            prompt="a door",
        )
    with Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))) as made:
        made = made.convert("RGBA")
        assert made.getpixel((24, 10)) == (200, 30, 30, 255)  # outside the mask: untouched
        assert made.getpixel((4, 10)) != (200, 30, 30, 255)  # inside: edited
    (roles,) = conn.execute("SELECT inputs FROM imagen.jobs").fetchone()
    assert [ref["role"] for ref in roles] == ["image", "mask"]


def _bomb() -> bytes:
    """A small PNG whose header says 50,000 × 50,000 pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("files", "param", "fragment"),
    [
        ({"image": ("bomb.png", _bomb(), "image/png")}, "image", "decompression bomb"),
        ({"image": ("notes.png", b"just text, not a picture", "image/png")}, "image",
         "not a PNG, JPEG or WebP image"),
        ({"image": ("a.png", _png(32, 32), "image/png"),
          "mask": ("m.png", _png(16, 16), "image/png")}, "mask", "must be the same size"),
        ({"image": [("a.png", _png(8, 8), "image/png"), ("b.png", _png(8, 8), "image/png")]},
         "inputs", "takes at most 1 image input"),
    ],
)  # fmt: skip
def test_bad_inputs_are_refused_with_no_job_and_no_file_left(
    server, conn, inputs, files, param, fragment
):
    with _client(server) as client, pytest.raises(openai.BadRequestError) as raised:
        client.images.edit(model="mock", prompt="x", **files)
    assert fragment in str(raised.value)
    assert raised.value.body["param"] == param
    assert _jobs(conn) == 0
    assert _files(inputs) == []


def test_too_many_or_too_large_uploads_and_other_bodies_are_refused(server, conn, inputs):
    headers = {"Authorization": f"Bearer {ALICE_KEY}"}
    many = [("image[]", (f"{i}.png", _png(4, 4), "image/png")) for i in range(17)]
    answer = httpx.post(
        f"{server}/v1/images/edits", files=many, data={"prompt": "x"}, headers=headers
    )
    assert answer.status_code == 400
    assert "17 input images, more than the 16 allowed" in answer.json()["error"]["message"]
    no_image = httpx.post(
        f"{server}/v1/images/edits",
        files={"mask": ("m.png", _png(8, 8), "image/png")},
        data={"prompt": "x"},
        headers=headers,
    )
    assert no_image.status_code == 400
    assert no_image.json()["error"] == {
        "message": "Missing required parameter: 'image'.", "type": "invalid_request_error",
        "param": "image", "code": None,
    }  # fmt: skip
    huge = httpx.post(
        f"{server}/v1/images/edits",
        files={"image": ("big.png", b"\x89PNG" + b"0" * (9 * 1024 * 1024), "image/png")},
        data={"prompt": "x"},
        headers=headers,
        timeout=30,
    )
    assert huge.status_code == 413
    as_json = httpx.post(f"{server}/v1/images/edits", json={"prompt": "x"}, headers=headers)
    assert as_json.status_code == 400
    assert "multipart/form-data" in as_json.json()["error"]["message"]
    bad_strength = httpx.post(
        f"{server}/v1/images/edits",
        files={"image": ("a.png", _png(4, 4), "image/png")},
        data={"prompt": "x", "strength": "nan"},
        headers=headers,
    )
    assert bad_strength.status_code == 400
    assert bad_strength.json()["error"]["param"] == "strength"
    unauthenticated = httpx.post(
        f"{server}/v1/images/edits", files={"image": ("a.png", _png(4, 4), "image/png")}
    )
    assert unauthenticated.status_code == 401
    assert _jobs(conn) == 0
    assert _files(inputs) == []


def test_variations_answer_an_openai_shaped_not_supported(server, conn):
    with (
        _client(server) as client,
        pytest.raises(openai.BadRequestError) as raised,
        pytest.warns(DeprecationWarning, match="deprecated"),  # the SDK marks variations deprecated
    ):
        client.images.create_variation(image=("a.png", _png(8, 8), "image/png"))
    assert "not supported" in str(raised.value)
    assert raised.value.body["code"] == "unsupported_endpoint"
    assert _jobs(conn) == 0


def test_another_owners_upload_of_the_same_bytes_is_kept_apart(server, conn, inputs):
    source = _png(20, 20)
    for key in (ALICE_KEY, BOB_KEY):
        with _client(server, key) as client:
            client.images.edit(model="mock", image=("a.png", source, "image/png"), prompt="x")
    kept = _files(inputs)
    assert len(kept) == 2  # a folder each: one owner's job can never name the other's file
    assert {path.name for path in kept} == {hashlib.sha256(source).hexdigest()}
    assert kept[0].parent != kept[1].parent


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.one_of(
        st.binary(max_size=2048),
        st.binary(max_size=512).map(lambda tail: b"\x89PNG\r\n\x1a\n" + tail),
        st.binary(max_size=512).map(lambda tail: b"\xff\xd8\xff" + tail),
        st.binary(max_size=512).map(lambda tail: b"RIFF\x00\x00\x00\x00WEBP" + tail),
    ),
    name=st.text(max_size=300),
    fields=st.dictionaries(
        st.sampled_from(["n", "size", "strength", "input_fidelity", "quality", "stream"]),
        st.text(max_size=20),
        max_size=3,
    ),
)
def test_hostile_uploads_get_a_4xx_and_leave_nothing(server, conn, inputs, data, name, fields):
    answer = httpx.post(
        f"{server}/v1/images/edits",
        files={"image": (name or "x", data, "image/png")},
        data={"prompt": "x", "model": "mock", **fields},
        headers={"Authorization": f"Bearer {ALICE_KEY}"},
        timeout=30,
    )
    assert answer.status_code in (400, 404, 413), answer.text
    error = answer.json()["error"]
    assert "\n" not in error["message"]
    assert _jobs(conn) == 0
    assert _files(inputs) == []


def test_the_job_api_queues_an_edit_of_an_earlier_upload_and_checks_references(server, conn):
    source = _png(24, 24)
    with _client(server) as client:
        client.images.edit(model="mock", image=("a.png", source, "image/png"), prompt="x")
    digest = hashlib.sha256(source).hexdigest()
    headers = {"Authorization": f"Bearer {ALICE_KEY}"}
    again = httpx.post(
        f"{server}/v1/jobs",
        json={"prompt": "again", "inputs": [{"role": "image", "upload": digest}], "strength": 0},
        headers=headers,
    )
    assert again.status_code == 201, again.text
    assert again.json()["inputs"] == [{"role": "image", "upload": digest}]
    for refs, param in (
        ([{"role": "image", "object": "imagen-inputs/bob/x.png"}], "inputs[0].object"),
        ([{"role": "painting", "upload": digest}], "inputs[0].role"),
        ([{"role": "image", "upload": digest, "object": "imagen-inputs/alice/x"}], "inputs[0]"),
        ([], "inputs"),
    ):
        refused = httpx.post(
            f"{server}/v1/jobs", json={"prompt": "x", "inputs": refs}, headers=headers
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == param
    deadline = time.monotonic() + 30
    while conn.execute("SELECT status FROM imagen.jobs WHERE id = %s",
                       (again.json()["id"],)).fetchone()[0] != "done":  # fmt: skip
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert conn.execute("SELECT count(*) FROM imagen.jobs").fetchone()[0] == 2

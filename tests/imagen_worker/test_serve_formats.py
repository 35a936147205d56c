"""What gpt-image answers carry, through imagen serve: formats, size, quality, background."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import openai
import pytest
from PIL import Image
from worker_helpers import running, serving

from imagen.config import parse_config
from imagen.metadata.reader import read_image_info
from imagen.yamlfile import Located
from imagen_worker.serve.app import create_app
from imagen_worker.serve.settings import ServeSettings, hash_key

KEY = "imk_alice-format-test-key"


@pytest.fixture
def client(db_url, tmp_path) -> Iterator[openai.OpenAI]:
    config = parse_config(
        Located(
            {"output": {"directory": str(tmp_path / "out")}, "backends": {"mock": {"type": "mock"}}}
        )
    )
    settings = ServeSettings(api_keys={hash_key(KEY): "alice"}, wait_s=30)
    app = create_app(config, db_url, settings, thumbnails=tmp_path / "cache")
    with (
        serving(app) as url,
        running(config, db_url),
        openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0) as sdk,
    ):
        yield sdk


@pytest.mark.parametrize(
    ("fmt", "pil", "signature"),
    [("webp", "WEBP", b"RIFF"), ("jpeg", "JPEG", b"\xff\xd8\xff"), ("png", "PNG", b"\x89PNG")],
)
def test_output_format_and_compression_are_honoured_for_any_backend(
    client, tmp_path, fmt, pil, signature
):
    result = client.images.generate(
        model="mock",
        prompt="a lighthouse",
        size="48x32",
        output_format=fmt,
        output_compression=40,
    )
    data = base64.b64decode(result.data[0].b64_json)
    assert data.startswith(signature)
    assert Image.open(io.BytesIO(data)).format == pil
    assert (result.output_format, result.size, result.quality) == (fmt, "48x32", "auto")
    copy = tmp_path / f"copy.{fmt}"
    copy.write_bytes(data)
    info = read_image_info(copy)  # the parameters travel with the converted copy
    assert info.fields["prompt"] == "a lighthouse"


def test_a_url_answer_links_the_converted_copy(client):
    result = client.images.generate(
        model="mock", prompt="a harbour", size="32x32", output_format="jpeg", response_format="url"
    )
    url = result.data[0].url
    assert url.endswith("/file?format=jpeg")
    response = httpx.get(url, headers={"Authorization": f"Bearer {KEY}"})
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content.startswith(b"\xff\xd8\xff")


def test_size_auto_is_the_backends_default_and_the_answer_says_which(client):
    result = client.images.generate(model="mock", prompt="a field", size="auto")
    assert result.size == "512x512"  # the mock's default
    assert result.output_format == "png"


def test_background_and_moderation_reach_the_backend_which_says_what_it_ignored(client):
    raw = client.images.with_raw_response.generate(
        model="mock", prompt="a logo", size="32x32", background="transparent", moderation="low"
    )
    answer = raw.http_response.json()
    assert answer["background"] == "transparent"
    assert answer["imagen"]["ignored"] == ["options.background", "options.moderation"]
    quiet = client.images.with_raw_response.generate(
        model="mock", prompt="a logo", size="32x32", background="auto", moderation="auto"
    )
    assert "ignored" not in quiet.http_response.json()["imagen"]  # auto: nothing to pass on

"""The OpenAI adapter passes the conformance suite, through the real openai SDK."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai_standin import KEY, OpenAIStandIn

from imagen import Request
from imagen.testing import BackendConformance, InvalidSlice


class TestOpenAIConformance(BackendConformance):
    backend_type = "openai"
    invalid_slices = (
        InvalidSlice({"model": "dall-e-3"}, "model", id="retired-model"),
        InvalidSlice({"model": "gpt-image-9"}, "model", id="unknown-model"),
        InvalidSlice({}, "api_key_env", environ={}, id="no-key"),
        InvalidSlice({"quality": "ultra"}, "quality", id="bad-quality"),
        InvalidSlice({"output_compression": 150}, "output_compression", id="bad-compression"),
        InvalidSlice({"base_url": "localhost:8080/v1"}, "base_url", id="no-scheme"),
        InvalidSlice({"style": "vivid"}, "style", id="unknown-key"),
    )
    ignores = frozenset({"negative_prompt", "steps", "seed"})
    stops_upstream = False  # the Images API has no way to stop a generation
    timeout_key = "timeout_s"
    slow_run_s = 30.0

    @pytest.fixture
    def upstream(self) -> Iterator[OpenAIStandIn]:
        with OpenAIStandIn() as server:
            yield server

    @pytest.fixture
    def valid_slice(self, upstream):
        return {"base_url": upstream.api, "retry_attempts": 2}

    @pytest.fixture
    def environ(self):
        return {"OPENAI_API_KEY": KEY}

    @pytest.fixture
    def base_request(self) -> Request:
        return Request(
            "a lighthouse at dusk, conformance check", width=1024, height=1024, seed=1234
        )

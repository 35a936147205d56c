"""The Replicate adapter passes the conformance suite, through the real replicate SDK."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from replicate_standin import FLUX_SIZES, SDXL_VERSION, ReplicateStandIn

from imagen import Request
from imagen.testing import BackendConformance, InvalidSlice
from imagen_replicate.mapping import _nearest_ratio

TOKEN = "r8_conformance_token_abcdef"


class TestReplicateConformance(BackendConformance):
    backend_type = "replicate"
    invalid_slices = (
        InvalidSlice({}, "model", id="no-model"),
        InvalidSlice({"model": "flux-schnell"}, "model", id="no-owner"),
        InvalidSlice({"model": "a/b"}, "token_env", environ={}, id="no-token"),
        InvalidSlice({"model": "a/b", "family": "dalle"}, "family", id="unknown-family"),
        InvalidSlice(
            {"model": "a/b", "inputs": {"colour": "c"}}, "inputs.colour", id="unknown-field"
        ),
        InvalidSlice({"model": "a/b", "poll_interval_s": 0}, "poll_interval_s", id="zero-poll"),
        InvalidSlice({"model": "a/b", "base_url": "api.replicate.com"}, "base_url", id="no-scheme"),
    )
    ignores = frozenset({"negative_prompt"})
    timeout_key = "http_timeout_s"
    passes_options_through = True  # --opt KEY=VALUE are the model's inputs
    slow_run_s = 30.0

    @pytest.fixture
    def upstream(self) -> Iterator[ReplicateStandIn]:
        with ReplicateStandIn(TOKEN) as server:
            yield server

    @pytest.fixture
    def valid_slice(self, upstream):
        return {
            "model": "black-forest-labs/flux-schnell",
            "base_url": upstream.url,
            "poll_interval_s": 0.02,
            "retry_attempts": 2,
        }

    @pytest.fixture
    def environ(self):
        return {"REPLICATE_API_TOKEN": TOKEN}

    @pytest.fixture
    def base_request(self) -> Request:
        # flux-schnell takes at most 4 steps: the suite's probe must stay within them.
        return Request(
            "a lighthouse at dusk, conformance check", width=64, height=64, seed=1234, steps=4
        )

    def seen_seed(self, upstream: ReplicateStandIn) -> int | None:
        return upstream.last_seed

    def expected_size(self, request: Request) -> tuple[int, int] | None:
        # flux-schnell takes an aspect ratio, not pixels: the adapter sends the nearest one.
        ratio = _nearest_ratio(request.width, request.height, tuple(FLUX_SIZES))
        return FLUX_SIZES[ratio]


class TestReplicateSDXLConformance(TestReplicateConformance):
    """SDXL through a pinned version: the suite's input checks too (image, mask, strength)."""

    ignores = frozenset()  # SDXL takes a negative prompt

    @pytest.fixture
    def valid_slice(self, upstream):
        return {
            "model": f"stability-ai/sdxl:{SDXL_VERSION}",
            "base_url": upstream.url,
            "poll_interval_s": 0.02,
            "retry_attempts": 2,
        }

    @pytest.fixture
    def base_request(self) -> Request:
        return Request("a lighthouse at dusk, conformance check", width=64, height=64, seed=1234)

    def expected_size(self, request: Request) -> tuple[int, int] | None:
        return None  # SDXL takes pixels; the stand-in's output keeps an edit's input size

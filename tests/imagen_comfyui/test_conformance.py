"""The ComfyUI adapter passes imagen's backend conformance suite against the stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from comfy_standin import ComfyStandIn

from imagen.testing import BackendConformance, InvalidSlice

MODEL = "sd_xl_base_1.0.safetensors"
TOKEN = "comfy-proxy-token-123456"


class TestComfyUIConformance(BackendConformance):
    backend_type = "comfyui"
    invalid_slices = (
        InvalidSlice({"model": MODEL}, "base_url", id="no-base-url"),
        InvalidSlice({"base_url": "gpu-box:8188", "model": MODEL}, "base_url", id="no-scheme"),
        InvalidSlice({"base_url": "http://127.0.0.1:9"}, "model", id="no-model"),
        InvalidSlice(
            {"base_url": "http://127.0.0.1:9", "model": MODEL, "template": "sd3"},
            "template",
            id="unknown-template",
        ),
        InvalidSlice(
            {"base_url": "http://127.0.0.1:9", "workflow": "/nonexistent/flow.json"},
            "workflow",
            id="missing-workflow",
        ),
        InvalidSlice(
            {"base_url": "http://127.0.0.1:9", "model": MODEL, "inputs": {"prompt": "6.text"}},
            "inputs",
            id="inputs-with-template",
        ),
        InvalidSlice(
            {"base_url": "http://127.0.0.1:9", "model": MODEL, "token_env": "NO_SUCH_TOKEN"},
            "token_env",
            id="token-unset",
        ),
        InvalidSlice(
            {"base_url": "http://127.0.0.1:9", "model": MODEL, "idle_timeout_s": 0},
            "idle_timeout_s",
            id="zero-timeout",
        ),
        InvalidSlice(
            {"base_url": "http://127.0.0.1:9", "model": MODEL, "steps": 20},
            "steps",
            id="unknown-key",
        ),
    )
    slow_run_s = 30.0

    @pytest.fixture
    def upstream(self) -> Iterator[ComfyStandIn]:
        with ComfyStandIn() as server:
            yield server

    @pytest.fixture
    def valid_slice(self, upstream):
        return {
            "base_url": upstream.url,
            "model": MODEL,
            "token_env": "COMFY_TOKEN",
            "silence_s": 2,
        }

    @pytest.fixture
    def environ(self):
        return {"COMFY_TOKEN": TOKEN}

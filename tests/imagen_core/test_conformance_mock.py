"""The built-in mock backend passes the conformance suite, as every adapter must."""

from __future__ import annotations

import pytest

from imagen import Request
from imagen.testing import BackendConformance, InvalidSlice


class TestMockConformance(BackendConformance):
    backend_type = "mock"
    invalid_slices = (
        InvalidSlice({"width": 3}, "width", id="width-too-small"),
        InvalidSlice({"height": "tall"}, "height", id="height-not-a-number"),
        InvalidSlice({"format": "gif"}, "format", id="unknown-format"),
        InvalidSlice({"colour": "red"}, "colour", id="unknown-key"),
    )
    ignores = frozenset({"negative_prompt", "steps"})
    has_upstream = False  # it draws its pictures itself
    slow_run_s = 30.0

    @pytest.fixture
    def valid_slice(self, upstream):
        return {"width": 64, "height": 64}

    @pytest.fixture
    def environ(self):
        return {"IMAGEN_CONFORMANCE_SECRET": "never-print-me-0192"}

    def make_slow(self, upstream, request: Request, seconds: float) -> Request:
        return request.replace(options={**request.options, "delay": seconds})

    def make_failure(self, upstream, request: Request, kind: str) -> Request:
        return request.replace(options={**request.options, "fail": kind})

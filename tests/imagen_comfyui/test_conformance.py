"""The ComfyUI adapter passes imagen's backend conformance suite against the stand-in."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from aiohttp import web
from comfy_standin import ComfyStandIn

from imagen.testing import BackendConformance, Exchange, InvalidSlice, Traffic

MODEL = "sd_xl_base_1.0.safetensors"
TOKEN = "comfy-proxy-token-123456"


class RecordingComfy(ComfyStandIn):
    """The stand-in, with the suite's controls: an aiohttp stand-in plugs in with one middleware.

    It records every request (``POST /prompt`` is a submission; ``POST /interrupt`` and a
    ``POST /queue`` deletion are cancels) and can hang, drop or answer any status for the
    next ``POST /prompt``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.traffic = Traffic()
        self._faults: list[tuple[str, int, Mapping[str, str]]] = []
        self._stopping: asyncio.Event | None = None

    def hang_next(self) -> None:
        self._faults.append(("hang", 0, {}))

    def drop_next(self) -> None:
        self._faults.append(("drop", 0, {}))

    def answer_next(self, status: int, body: Any = None, headers: Any = None) -> None:
        self._faults.append(("answer", status, headers or {}))

    async def _revive(self) -> None:
        self._stopping = asyncio.Event()
        await super()._revive()

    async def _kill(self) -> None:
        assert self._stopping is not None
        self._stopping.set()  # release held requests, or the server waits on them
        await super()._kill()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()  # cached: the handler reads it again
        route = f"{request.method} {request.path}"
        submission = route == "POST /prompt"
        cancel = route == "POST /interrupt" or (route == "POST /queue" and b"delete" in body)
        exchange = Exchange(request.method, request.path, dict(request.headers), body)
        self.traffic.record(exchange, submission=submission, cancel=cancel)
        if submission and self._faults:
            kind, status, headers = self._faults.pop(0)
            if kind == "answer":
                text = f"imagen conformance check: status {status}\n"
                return web.Response(status=status, text=text, headers=headers)
            if kind == "drop":
                await super()._auth(request, handler)  # it runs; its answer is lost
            else:
                assert self._stopping is not None
                await self._stopping.wait()  # hang until the stand-in stops
            if request.transport is not None:  # None when the client already hung up
                request.transport.close()
            return web.Response()
        return await super()._auth(request, handler)


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
    timeout_key = "http_timeout_s"
    slow_run_s = 30.0

    @pytest.fixture
    def upstream(self) -> Iterator[RecordingComfy]:
        with RecordingComfy() as server:
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

"""The ComfyUI adapter passes imagen's backend conformance suite against the stand-in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from aiohttp import web
from comfy_standin import ComfyStandIn

from imagen.testing import BackendConformance, Exchange, InvalidSlice, Traffic
from imagen.testing.checks_inputs import InputChecks

MODEL = "sd_xl_base_1.0.safetensors"
TOKEN = "comfy-proxy-token-123456"


class RecordingComfy(ComfyStandIn):
    """The stand-in, with the suite's controls: an aiohttp stand-in plugs in with one middleware.

    It records every request (an upload's file as an input received; ``POST /prompt`` is a
    submission; ``POST /interrupt`` and a
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

    def _image_upload(self, post: Any, save: Any = None) -> web.Response:
        image = post.get("image")
        if isinstance(image, web.FileField):
            self.traffic.record_input(image.file.read())
            image.file.seek(0)
        return super()._image_upload(post, save)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # Cached for the handler to read again; an upload's multipart body is left to the
        # handler's post(), which cannot parse a body already read: its file is recorded
        # where it is taken (_image_upload).
        body = b"" if request.path.startswith("/upload/") else await request.read()
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


class TestComfyUIImageToImage(InputChecks):
    """The input checks, on the img2img template: an uploaded image, strength as denoise."""

    backend_type = "comfyui"

    @pytest.fixture
    def upstream(self) -> Iterator[RecordingComfy]:
        with RecordingComfy() as server:
            yield server

    @pytest.fixture
    def valid_slice(self, upstream):
        return {"base_url": upstream.url, "model": MODEL, "template": "img2img", "silence_s": 2}

    @pytest.fixture
    def environ(self):
        return {}


class TestComfyUIMaskOnTheImagesLoader(TestComfyUIImageToImage):
    """The input checks, on a workflow whose mask is LoadImage's own (via /upload/mask)."""

    @pytest.fixture
    def valid_slice(self, upstream, tmp_path):
        def node(class_type: str, **inputs: Any) -> dict[str, Any]:
            return {"class_type": class_type, "inputs": inputs, "_meta": {"title": class_type}}

        graph = {
            "4": node("CheckpointLoaderSimple", ckpt_name=MODEL),
            "10": {**node("LoadImage", image="example.png"), "_meta": {"title": "Photo"}},
            "11": node(
                "VAEEncodeForInpaint",
                pixels=["10", 0],
                vae=["4", 2],
                mask=["10", 1],
                grow_mask_by=6,
            ),
            "6": node("CLIPTextEncode", text="", clip=["4", 1]),
            "7": node("CLIPTextEncode", text="", clip=["4", 1]),
            "3": node(
                "KSampler",
                model=["4", 0],
                seed=0,
                steps=4,
                cfg=7.0,
                sampler_name="euler",
                scheduler="normal",
                positive=["6", 0],
                negative=["7", 0],
                latent_image=["11", 0],
                denoise=1.0,
            ),
            "8": node("VAEDecode", samples=["3", 0], vae=["4", 2]),
            "9": node("SaveImage", images=["8", 0], filename_prefix="x"),
        }
        path = tmp_path / "inpaint_api.json"
        path.write_text(json.dumps(graph))
        return {
            "base_url": upstream.url,
            "workflow": str(path),
            "inputs": {
                "prompt": "6.text",
                "image": "Photo.image",
                "mask": "Photo.image",
                "strength": "3.denoise",
            },
            "silence_s": 2,
        }

"""A loopback ComfyUI: HTTP and websocket on one 127.0.0.1 port, as ComfyUI 0.3.64 answers.

Built on aiohttp, as ComfyUI itself is, from the facts in ``shared/protocols.md``:

- ``POST /prompt`` validates the graph (unknown classes, missing inputs, values not in a
  list, out of range, no outputs) and answers 400 with ``error`` and ``node_errors``, or
  queues it under the client's ``prompt_id`` and answers ``{prompt_id, number, node_errors}``.
- A worker runs the queue in number order and sends, to the socket whose ``clientId`` is
  the prompt's ``client_id`` only: ``execution_start``, ``execution_cached``, per node
  ``progress_state`` then ``executing``, ``progress`` per sampler step with binary preview
  frames (type 1, format 2, PNG), ``executed`` for output nodes (one frame per batch),
  ``execution_success``, ``status``, and last ``executing`` with node null. Errors give
  ``execution_error``; ``/interrupt`` (checked between steps here, as ComfyUI checks
  between nodes) gives ``execution_interrupted``. Status broadcasts go to every socket.
- Resubmitting an identical graph runs nothing: ``execution_cached`` lists every node and
  ``executed`` re-announces the earlier files.
- ``/history/{id}`` (``{}`` when unknown), ``/queue`` (pending unsorted), ``/view``
  (404 missing, 400 for a path escape), ``/object_info[/{class}]``, ``/system_stats``.
- Queue and history live in memory: :meth:`restart` loses them, like a real restart.

Controls for tests: :meth:`fail_next`, :meth:`slow_next`, :meth:`restart`,
:meth:`drop_sockets`, :attr:`silent` (sockets stay open, no frames), :attr:`big_image`.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import json
import struct
import threading
import time
import uuid
from typing import Any, Self

from aiohttp import WSMsgType, web
from PIL import Image, PngImagePlugin

CHECKPOINTS = ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors"]
UNETS = ["flux1-schnell.safetensors", "flux1-dev.safetensors"]
CLIPS = ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "t5xxl_fp16.safetensors"]
VAES = ["ae.safetensors", "sdxl_vae.safetensors"]
SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde"]
SCHEDULERS = ["normal", "karras", "simple", "sgm_uniform"]
SEED = ["INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}]
SIDE = ["INT", {"default": 1024, "min": 16, "max": 16384, "step": 8}]
BATCH = ["INT", {"default": 1, "min": 1, "max": 4096}]
FLOAT = ["FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0}]
STEPS = ["INT", {"default": 20, "min": 1, "max": 10000}]

NODES: dict[str, dict[str, Any]] = {
    "CheckpointLoaderSimple": {
        "required": {"ckpt_name": [CHECKPOINTS]},
        "output": ["MODEL", "CLIP", "VAE"],
    },
    "UNETLoader": {
        "required": {"unet_name": [UNETS], "weight_dtype": [["default", "fp8_e4m3fn"]]},
        "output": ["MODEL"],
    },
    "DualCLIPLoader": {
        "required": {
            "clip_name1": [CLIPS],
            "clip_name2": [CLIPS],
            "type": [["sdxl", "sd3", "flux"]],
        },
        "output": ["CLIP"],
    },
    "VAELoader": {"required": {"vae_name": [VAES]}, "output": ["VAE"]},
    "CLIPTextEncode": {
        "required": {"text": ["STRING", {"multiline": True}], "clip": ["CLIP"]},
        "output": ["CONDITIONING"],
    },
    "EmptyLatentImage": {
        "required": {"width": SIDE, "height": SIDE, "batch_size": BATCH},
        "output": ["LATENT"],
    },
    "EmptySD3LatentImage": {
        "required": {"width": SIDE, "height": SIDE, "batch_size": BATCH},
        "output": ["LATENT"],
    },
    "KSampler": {
        "required": {
            "model": ["MODEL"],
            "seed": SEED,
            "steps": STEPS,
            "cfg": FLOAT,
            "sampler_name": [SAMPLERS],
            "scheduler": [SCHEDULERS],
            "positive": ["CONDITIONING"],
            "negative": ["CONDITIONING"],
            "latent_image": ["LATENT"],
            "denoise": FLOAT,
        },
        "output": ["LATENT"],
    },
    "LatentUpscale": {
        "required": {
            "samples": ["LATENT"],
            "upscale_method": [["nearest-exact"]],
            "width": SIDE,
            "height": SIDE,
            "crop": [["disabled"]],
        },
        "output": ["LATENT"],
    },
    "FluxGuidance": {
        "required": {"conditioning": ["CONDITIONING"], "guidance": FLOAT},
        "output": ["CONDITIONING"],
    },
    "RandomNoise": {"required": {"noise_seed": SEED}, "output": ["NOISE"]},
    "BasicGuider": {
        "required": {"model": ["MODEL"], "conditioning": ["CONDITIONING"]},
        "output": ["GUIDER"],
    },
    "KSamplerSelect": {"required": {"sampler_name": [SAMPLERS]}, "output": ["SAMPLER"]},
    "BasicScheduler": {
        "required": {
            "model": ["MODEL"],
            "scheduler": [SCHEDULERS],
            "steps": STEPS,
            "denoise": FLOAT,
        },
        "output": ["SIGMAS"],
    },
    "SamplerCustomAdvanced": {
        "required": {
            "noise": ["NOISE"],
            "guider": ["GUIDER"],
            "sampler": ["SAMPLER"],
            "sigmas": ["SIGMAS"],
            "latent_image": ["LATENT"],
        },
        "output": ["LATENT", "LATENT"],
    },
    "VAEDecode": {"required": {"samples": ["LATENT"], "vae": ["VAE"]}, "output": ["IMAGE"]},
    "SaveImage": {
        "required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
        "output": [],
        "output_node": True,
    },
    "PreviewImage": {"required": {"images": ["IMAGE"]}, "output": [], "output_node": True},
    "SaveLatent": {
        "required": {
            "samples": ["LATENT"],
            "filename_prefix": ["STRING", {"default": "latents/ComfyUI"}],
        },
        "output": [],
        "output_node": True,
    },
}
SAMPLER_NODES = ("KSampler", "SamplerCustomAdvanced")


def object_info(name: str) -> dict[str, Any]:
    spec = NODES[name]
    return {
        "input": {"required": spec["required"], "optional": {}},
        "input_order": {"required": list(spec["required"])},
        "output": spec["output"],
        "output_is_list": [False] * len(spec["output"]),
        "output_name": spec["output"],
        "name": name,
        "display_name": name,
        "description": "",
        "python_module": "nodes",
        "category": "stand-in",
        "output_node": spec.get("output_node", False),
    }


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _error(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def validate(graph: dict[str, Any]) -> dict[str, Any] | None:
    """ComfyUI's answer to an invalid graph, or None when it may be queued."""
    for node, entry in graph.items():
        if entry.get("class_type") not in NODES:
            return {
                "error": _error(
                    "invalid_prompt",
                    f"Cannot execute because node {entry.get('class_type')} does not exist.",
                    f"Node ID '#{node}'",
                ),
                "node_errors": {},
            }
    outputs = [n for n, e in graph.items() if NODES[e["class_type"]].get("output_node")]
    if not outputs:
        return {"error": _error("prompt_no_outputs", "Prompt has no outputs"), "node_errors": {}}
    node_errors: dict[str, Any] = {}
    for node, entry in graph.items():
        errors = []
        for name, config in NODES[entry["class_type"]]["required"].items():
            value = entry.get("inputs", {}).get(name)
            if value is None:
                errors.append(
                    _error(
                        "required_input_missing", "Required input is missing", name, input_name=name
                    )
                )
            elif _is_link(value):
                if value[0] not in graph:
                    errors.append(
                        _error(
                            "exception_during_validation",
                            "Exception when validating inner node",
                            f"'{value[0]}'",
                            input_name=name,
                        )
                    )
            elif isinstance(config[0], list):
                if value not in config[0]:
                    errors.append(
                        _error(
                            "value_not_in_list",
                            "Value not in list",
                            f"{name}: '{value}' not in {config[0]}",
                            input_name=name,
                            input_config=config,
                            received_value=value,
                        )
                    )
            elif config[0] == "INT" and isinstance(value, int):
                if value > config[1]["max"]:
                    errors.append(
                        _error(
                            "value_bigger_than_max",
                            f"Value {value} bigger than max of {config[1]['max']}",
                            f"{name}",
                            input_name=name,
                            received_value=value,
                        )
                    )
                elif value < config[1]["min"]:
                    errors.append(
                        _error(
                            "value_smaller_than_min",
                            f"Value {value} smaller than min of {config[1]['min']}",
                            f"{name}",
                            input_name=name,
                            received_value=value,
                        )
                    )
        if errors:
            node_errors[node] = {
                "errors": errors,
                "dependent_outputs": outputs,
                "class_type": entry["class_type"],
            }
    if node_errors:
        return {
            "error": _error("prompt_outputs_failed_validation", "Prompt outputs failed validation"),
            "node_errors": node_errors,
        }
    return None


def _order(graph: dict[str, Any]) -> list[str]:
    done: list[str] = []

    def visit(node: str) -> None:
        if node in done:
            return
        for value in graph[node].get("inputs", {}).values():
            if _is_link(value):
                visit(value[0])
        done.append(node)

    for node in graph:
        visit(node)
    return done


def _upstream(graph: dict[str, Any], node: str, class_names: tuple[str, ...]) -> str | None:
    """The nearest node of one of ``class_names`` feeding ``node`` (breadth first)."""
    frontier = [node]
    seen = set()
    while frontier:
        current = frontier.pop(0)
        if current in seen:
            continue
        seen.add(current)
        if graph[current]["class_type"] in class_names and current != node:
            return current
        frontier += [v[0] for v in graph[current].get("inputs", {}).values() if _is_link(v)]
    return None


class Run:
    def __init__(
        self, number: int, prompt_id: str, graph: dict[str, Any], client_id: str | None
    ) -> None:
        self.number = number
        self.prompt_id = prompt_id
        self.graph = graph
        self.client_id = client_id
        self.duration: float | None = None
        self.fail = False


class ComfyStandIn:
    """The server; ``url`` is its base URL. Use as a context manager."""

    def __init__(self, *, step_delay: float = 0.002, token: str | None = None) -> None:
        self.step_delay = step_delay
        self.token = token  # when set, every request needs "Authorization: Bearer <token>",
        # as a reverse proxy in front of ComfyUI would demand
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="comfy-standin", daemon=True
        )
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.pending: list[Run] = []
        self.running: Run | None = None
        self.history: dict[str, Any] = {}
        self.files: dict[tuple[str, str], bytes] = {}
        self.cache: dict[str, dict[str, Any]] = {}
        self.number = 0
        self.counter = 0
        self.interrupt_requested = False
        self.silent = False
        self.big_image: bytes | None = None
        self.stall_prompt_s = 0.0  # POST /prompt hangs this long before doing anything
        self.late_answer_s = 0.0  # POST /prompt queues the run, then answers this late
        self.received: list[dict[str, Any]] = []
        self.view_requests = 0
        self._fail_next: str | None = None
        self._fail_times = 0
        self._slow_next: float | None = None
        self._wake: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._auth])
        app.add_routes(
            [
                web.get("/system_stats", self._system_stats),
                web.get("/object_info", self._object_info),
                web.get("/object_info/{node_class}", self._object_info_one),
                web.post("/prompt", self._prompt),
                web.get("/queue", self._queue),
                web.post("/queue", self._queue_edit),
                web.post("/interrupt", self._interrupt),
                web.get("/history", self._history_all),
                web.get("/history/{prompt_id}", self._history),
                web.get("/view", self._view),
                web.get("/ws", self._ws),
            ]
        )
        self._wake = asyncio.Event()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._worker = asyncio.ensure_future(self._work())

    async def _stop(self) -> None:
        self._worker.cancel()
        for socket in list(self.sockets.values()):
            await socket.close()
        assert self._runner is not None
        await self._runner.cleanup()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, text="401 Unauthorized")
        return await handler(request)

    # -- controls for tests -----------------------------------------------------------------

    def fail_next(self, kind: str, times: int = 20) -> None:
        """transient: the next ``times`` POST /prompt get a 503 (as from a reverse proxy
        while ComfyUI restarts: more than any retry policy waits out); permanent: the next
        run raises execution_error in its sampler."""
        self._fail_next = kind
        self._fail_times = times

    def slow_next(self, seconds: float) -> None:
        """The next run's sampler takes ``seconds`` (its steps spread over them)."""
        self._slow_next = seconds

    def restart(self) -> None:
        """Lose queue, history and sockets, as a ComfyUI restart does."""
        asyncio.run_coroutine_threadsafe(self._restart(), self.loop).result(10)

    def drop_sockets(self) -> None:
        """Close every websocket (the server goes on running)."""
        asyncio.run_coroutine_threadsafe(self._drop(), self.loop).result(10)

    def wait_until(self, predicate: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return False

    async def _restart(self) -> None:
        self.pending.clear()
        if self.running is not None:
            self.running.duration = 0.0
            self.running.fail = False
            self.interrupt_requested = True
            self.running = None
        self.history.clear()
        self.cache.clear()
        await self._drop()

    async def _drop(self) -> None:
        for socket in list(self.sockets.values()):
            await socket.close()
        self.sockets.clear()

    # -- messages -----------------------------------------------------------------------------

    async def _send(self, client_id: str | None, kind: str, data: dict[str, Any]) -> None:
        socket = self.sockets.get(client_id or "")
        if socket is not None and not self.silent and not socket.closed:
            await socket.send_str(json.dumps({"type": kind, "data": data}))

    async def _send_bytes(self, client_id: str | None, data: bytes) -> None:
        socket = self.sockets.get(client_id or "")
        if socket is not None and not self.silent and not socket.closed:
            await socket.send_bytes(data)

    async def _broadcast_status(self) -> None:
        remaining = len(self.pending) + (1 if self.running else 0)
        for client_id, socket in list(self.sockets.items()):
            if not self.silent and not socket.closed:
                await socket.send_str(
                    json.dumps(
                        {
                            "type": "status",
                            "data": {
                                "status": {"exec_info": {"queue_remaining": remaining}},
                                "sid": client_id,
                            },
                        }
                    )
                )

    # -- HTTP ---------------------------------------------------------------------------------

    async def _system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "system": {
                    "os": "posix",
                    "ram_total": 0,
                    "ram_free": 0,
                    "comfyui_version": "0.3.64",
                    "python_version": "3.11.7",
                    "pytorch_version": "2.4.1",
                    "embedded_python": False,
                },
                "devices": [
                    {
                        "name": "stand-in",
                        "type": "cpu",
                        "index": None,
                        "vram_total": 0,
                        "vram_free": 0,
                        "torch_vram_total": 0,
                        "torch_vram_free": 0,
                    }
                ],
            }
        )

    async def _object_info(self, request: web.Request) -> web.Response:
        return web.json_response({name: object_info(name) for name in NODES})

    async def _object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        return web.json_response({name: object_info(name)} if name in NODES else {})

    async def _prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(body)
        if self.stall_prompt_s:
            await asyncio.sleep(self.stall_prompt_s)
        if self._fail_next == "transient":
            self._fail_times -= 1
            if self._fail_times <= 0:
                self._fail_next = None
            return web.Response(status=503, text="503 Service Unavailable")
        if "prompt" not in body:
            return web.json_response(
                {"error": _error("no_prompt", "No prompt provided"), "node_errors": {}}, status=400
            )
        graph = body["prompt"]
        problem = validate(graph)
        if problem is not None:
            return web.json_response(problem, status=400)
        prompt_id = body.get("prompt_id") or str(uuid.uuid4())
        self.number += 1
        run = Run(self.number, prompt_id, graph, body.get("client_id"))
        run.duration, self._slow_next = self._slow_next, None
        if self._fail_next == "permanent":
            run.fail, self._fail_next = True, None
        self.pending.append(run)
        await self._broadcast_status()
        assert self._wake is not None
        self._wake.set()
        if self.late_answer_s:
            await asyncio.sleep(self.late_answer_s)
        return web.json_response({"prompt_id": prompt_id, "number": run.number, "node_errors": {}})

    def _entry(self, run: Run) -> list[Any]:
        extra = {"client_id": run.client_id} if run.client_id else {}
        return [run.number, run.prompt_id, run.graph, extra, []]

    async def _queue(self, request: web.Request) -> web.Response:
        running = [self._entry(self.running)] if self.running else []
        pending = [self._entry(run) for run in reversed(self.pending)]  # a heap: unsorted
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _queue_edit(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self.pending.clear()
        for prompt_id in body.get("delete", []):
            self.pending = [run for run in self.pending if run.prompt_id != prompt_id]
        await self._broadcast_status()
        return web.Response(status=200)

    async def _interrupt(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        wanted = body.get("prompt_id")
        if self.running is not None and (wanted is None or wanted == self.running.prompt_id):
            self.interrupt_requested = True
        return web.Response(status=200)

    async def _history_all(self, request: web.Request) -> web.Response:
        most = int(request.query.get("max_items", "0") or 0)
        items = list(self.history.items())
        return web.json_response(dict(items[-most:] if most else items))

    async def _history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        filename = request.query.get("filename", "")
        subfolder = request.query.get("subfolder", "")
        if ".." in filename or ".." in subfolder or filename.startswith("/"):
            return web.Response(status=400)
        data = self.files.get((subfolder, filename))
        if data is None:
            return web.Response(status=404)
        self.view_requests += 1
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = len(data)
        await response.prepare(request)
        view = memoryview(data)
        for start in range(0, len(data), 1 << 16):
            await response.write(view[start : start + (1 << 16)])
        await response.write_eof()
        return response

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[client_id] = socket
        remaining = len(self.pending) + (1 if self.running else 0)
        await socket.send_str(
            json.dumps(
                {
                    "type": "status",
                    "data": {
                        "status": {"exec_info": {"queue_remaining": remaining}},
                        "sid": client_id,
                    },
                }
            )
        )
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                data = json.loads(message.data)
                if data.get("type") == "feature_flags":
                    await socket.send_str(
                        json.dumps(
                            {
                                "type": "feature_flags",
                                "data": {
                                    "supports_preview_metadata": True,
                                    "max_upload_size": 104857600,
                                },
                            }
                        )
                    )
        if self.sockets.get(client_id) is socket:
            del self.sockets[client_id]
        return socket

    # -- execution ----------------------------------------------------------------------------

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            self.pending.sort(key=lambda run: run.number)
            run = self.pending.pop(0)
            self.running = run
            self.interrupt_requested = False
            try:
                await self._execute(run)
            finally:
                if self.running is run:
                    self.running = None

    def _image(self, graph: dict[str, Any], save_node: str, index: int) -> tuple[bytes, int, int]:
        if self.big_image is not None:
            return self.big_image, 0, 0
        sampler = _upstream(graph, save_node, SAMPLER_NODES)
        seed = 0
        if sampler is not None:
            inputs = graph[sampler]["inputs"]
            seed = inputs.get("seed", 0)
            if "noise" in inputs:
                noise = graph[inputs["noise"][0]]["inputs"]
                seed = noise.get("noise_seed", 0)
        latent = _upstream(graph, save_node, ("EmptyLatentImage", "EmptySD3LatentImage"))
        width = height = 64
        if latent is not None:
            width = graph[latent]["inputs"]["width"]
            height = graph[latent]["inputs"]["height"]
        digest = hashlib.sha256(f"{seed}/{index}".encode()).digest()
        image = Image.new("RGB", (width, height), tuple(digest[:3]))
        info = PngImagePlugin.PngInfo()
        info.add_text("prompt", json.dumps(graph))  # as ComfyUI's SaveImage writes it
        out = io.BytesIO()
        image.save(out, "PNG", pnginfo=info)
        return out.getvalue(), width, height

    async def _execute(self, run: Run) -> None:
        client = run.client_id
        graph = run.graph
        now = lambda: int(time.time() * 1000)
        messages: list[Any] = []
        outputs: dict[str, Any] = {}

        async def send(kind: str, data: dict[str, Any]) -> None:
            data = {**data, "prompt_id": run.prompt_id} if kind != "status" else data
            if kind.startswith("execution_"):
                messages.append([kind, data])
            await self._send(client, kind, data)

        async def interrupted(node: str, kind: str) -> None:
            executed = list(outputs)
            await send(
                "execution_interrupted",
                {"node_id": node, "node_type": kind, "executed": executed, "timestamp": now()},
            )
            self._record(run, {}, "error", messages)
            await self._end(run)

        await send("execution_start", {"timestamp": now()})
        key = hashlib.sha256(json.dumps(graph, sort_keys=True).encode()).hexdigest()
        cached = self.cache.get(key)
        await send("execution_cached", {"nodes": list(graph) if cached else [], "timestamp": now()})
        if cached:
            for node, output in cached.items():
                await send("executed", {"node": node, "display_node": node, "output": output})
            outputs = copy.deepcopy(cached)
        else:
            states: dict[str, Any] = {}
            for node in _order(graph):
                kind = graph[node]["class_type"]
                if self.interrupt_requested:
                    await interrupted(node, kind)
                    return
                states[node] = {
                    "value": 0,
                    "max": 1,
                    "state": "running",
                    "node_id": node,
                    "prompt_id": run.prompt_id,
                    "display_node_id": node,
                    "parent_node_id": None,
                    "real_node_id": node,
                }
                await send("progress_state", {"nodes": copy.deepcopy(states)})
                await send("executing", {"node": node, "display_node": node})
                if kind in SAMPLER_NODES:
                    if not await self._sample(run, node, send):
                        await interrupted(node, kind)
                        return
                    if run.fail:
                        await send(
                            "execution_error",
                            {
                                "node_id": node,
                                "node_type": kind,
                                "executed": [],
                                "exception_message": "CUDA error: an illegal memory access was encountered\n",
                                "exception_type": "RuntimeError",
                                "traceback": ["Traceback ..."],
                                "current_inputs": {},
                                "current_outputs": [],
                                "timestamp": now(),
                            },
                        )
                        self._record(run, {}, "error", messages)
                        await self._end(run)
                        return
                if kind == "SaveLatent":
                    self.counter += 1
                    latents = [
                        {
                            "filename": f"ComfyUI_{self.counter:05}_.latent",
                            "subfolder": "latents",
                            "type": "output",
                        }
                    ]
                    outputs[node] = {"latents": latents}
                    await send(
                        "executed", {"node": node, "display_node": node, "output": outputs[node]}
                    )
                elif NODES[kind].get("output_node"):
                    batch = 1
                    latent = _upstream(graph, node, ("EmptyLatentImage", "EmptySD3LatentImage"))
                    if latent is not None:
                        batch = graph[latent]["inputs"]["batch_size"]
                    images = []
                    for index in range(batch):
                        self.counter += 1
                        prefix = graph[node]["inputs"].get("filename_prefix", "ComfyUI")
                        kind_dir = "output" if kind == "SaveImage" else "temp"
                        filename = f"{prefix}_{self.counter:05}_.png"
                        data, _, _ = self._image(graph, node, index)
                        self.files[("", filename)] = data
                        images.append({"filename": filename, "subfolder": "", "type": kind_dir})
                    outputs[node] = {"images": images}
                    await send(
                        "executed", {"node": node, "display_node": node, "output": outputs[node]}
                    )
                states[node]["state"] = "finished"
                states[node]["value"] = 1
            self.cache[key] = copy.deepcopy(outputs)
        await send("execution_success", {"timestamp": now()})
        self._record(run, outputs, "success", messages)
        await self._end(run)

    async def _sample(self, run: Run, node: str, send: Any) -> bool:
        inputs = run.graph[node]["inputs"]
        steps = inputs.get("steps")
        if not isinstance(steps, int):
            sigmas = inputs.get("sigmas")
            steps = run.graph[sigmas[0]]["inputs"].get("steps", 4) if _is_link(sigmas) else 4
        delay = (run.duration / steps) if run.duration else self.step_delay
        for step in range(1, steps + 1):
            await asyncio.sleep(delay)
            if self.interrupt_requested:
                return False
            await send("progress", {"value": step, "max": steps, "node": node})
            if step % 2 == 0:
                preview = io.BytesIO()
                Image.new("RGB", (8, 8), (step % 256, 0, 0)).save(preview, "PNG")
                await self._send_bytes(run.client_id, struct.pack(">II", 1, 2) + preview.getvalue())
        return True

    def _record(self, run: Run, outputs: dict[str, Any], status: str, messages: list[Any]) -> None:
        if self.running is not run:
            return  # the server "restarted" meanwhile: this run is forgotten
        self.history[run.prompt_id] = {
            "prompt": [
                run.number,
                run.prompt_id,
                run.graph,
                {"client_id": run.client_id},
                list(outputs),
            ],
            "outputs": outputs,
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": messages,
            },
            "meta": {node: {"node_id": node, "display_node": node} for node in outputs},
        }

    async def _end(self, run: Run) -> None:
        if self.running is not run:
            return
        self.running = None
        await self._broadcast_status()
        await self._send(run.client_id, "executing", {"node": None, "prompt_id": run.prompt_id})

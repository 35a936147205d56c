"""A loopback ComfyUI: HTTP and websocket on one 127.0.0.1 port, as ComfyUI 0.3.64 answers.

Built on aiohttp, as ComfyUI itself is, from the facts in ``shared/protocols.md``; the graph
rules (validation, what runs, cache keys) are in :mod:`comfy_nodes`.

- ``POST /prompt`` rejects a graph with an unknown node class or no output (400), and one
  where no output validates (400 with ``node_errors``). Otherwise it queues the outputs
  that validate under the client's ``prompt_id`` and answers ``{prompt_id, number,
  node_errors}``, ``node_errors`` naming the nodes of the outputs left out. Nodes that feed
  no output are neither validated nor run.
- A worker runs the queue in number order and sends, to the socket whose ``clientId`` is
  the prompt's ``client_id`` only: ``execution_start``, ``execution_cached`` (the nodes
  unchanged since the last prompt: they are not run again, and a cached output node
  re-announces its files with ``executed``), per node run ``progress_state`` then
  ``executing``, ``progress`` per sampler step with binary preview frames (type 1,
  format 2, PNG), ``executed`` for output nodes (one frame per batch),
  ``execution_success``, ``status``, and last ``executing`` with node null.
- Any node may fail at run time: ``execution_error`` with ComfyUI's multi-line
  ``exception_message`` (trailing newline), the nodes ``executed`` before it and tensor
  reprs in ``current_inputs``. SaveImage refuses a ``filename_prefix`` that leaves the
  output folder, as ComfyUI does; a ``/`` in it makes a subfolder, and files count per
  prefix (``x_00001_.png``, ``x_00002_.png``).
- ``/interrupt`` is checked between sampler steps and between nodes (a long node finishes
  first) and gives ``execution_interrupted``. Status broadcasts go to every socket.
- ``/history/{id}`` (``{}`` when unknown), ``/queue`` (pending unsorted), ``/view``
  (404 missing, 400 for a path escape; HEAD answers its headers only, as aiohttp's
  FileResponse does), ``/object_info[/{class}]``, ``/system_stats``.
- ``POST /upload/image`` and ``POST /upload/mask`` as server.py's ``image_upload``
  answers them: multipart ``image`` (400 without one, or without a file name), ``type``
  (input by default; output, temp; any other value is the real server's unbound-variable
  500), ``subfolder`` (400 when it leaves the folder), ``overwrite`` (only ``true`` or
  ``1`` overwrite; otherwise a file of the same name and the same bytes is kept and named
  in the answer, one with other bytes makes ``name (1).png``); answer
  ``{"name", "subfolder", "type"}`` (the subfolder as sent). ``/upload/mask`` also needs
  ``original_ref`` (JSON ``{filename, subfolder, type}``; missing: 500): it stores that
  file with the upload's alpha channel as its alpha, its PNG text kept; when the original
  is missing or its reference leaves the folder it stores nothing and still answers 200
  with the name, as the real one does.
- LoadImage and LoadImageMask validate ``image`` as nodes.py's VALIDATE_INPUTS does
  (``custom_validation_failed``, details ``image - Invalid image file: X`` unless the path
  exists, a folder included, as ``os.path.exists`` has it); at run time a path that is
  not an image file fails the node. An image run's output has its input's size; its cache
  key includes the file's SHA-256 (IS_CHANGED).
- Queue, history and cache live in memory: a restart (:meth:`restart`, :meth:`kill`) loses
  them, and while the process is down its port refuses connections.

Controls for tests: :meth:`fail_next`, :meth:`slow_next`, :meth:`restart`, :meth:`kill`,
:meth:`outage`, :meth:`drop_sockets`, :attr:`silent` (sockets stay open, no frames),
:attr:`big_image`, :attr:`stall_prompt_s`, :attr:`late_answer_s`; what arrived is in
:attr:`received` (``/prompt`` bodies), :attr:`interrupts`, :attr:`queue_edits`,
:attr:`uploads` (each upload's form fields and its bytes' SHA-256) and :attr:`requests`
(every ``METHOD /path``).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import json
import posixpath
import random
import string
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import WSMsgType, web
from comfy_nodes import (
    GENERATOR_NODES,
    IMAGE_LOADERS,
    LATENT_NODES,
    NODES,
    SAMPLER_NODES,
    input_path,
    is_link,
    is_output,
    object_info,
    run_order,
    save_path,
    signatures,
    upstream,
    validate,
)
from PIL import Image, PngImagePlugin

__all__ = ["ComfyStandIn"]

CUDA_ERROR = "CUDA error: an illegal memory access was encountered"


@dataclass
class Failure:
    """A run-time error to raise in the first node of ``node_class`` (a sampler if None)."""

    node_class: str | None = None
    message: str = CUDA_ERROR
    exception_type: str = "RuntimeError"

    def hits(self, class_type: str) -> bool:
        if self.node_class is None:
            return class_type in SAMPLER_NODES
        return class_type == self.node_class


class Run:
    def __init__(
        self,
        number: int,
        prompt_id: str,
        graph: dict[str, Any],
        client_id: str | None,
        outputs: list[str],
    ) -> None:
        self.number = number
        self.prompt_id = prompt_id
        self.graph = graph
        self.client_id = client_id
        self.outputs = outputs  # the output nodes that validated: only these run
        self.duration: float | None = None
        self.slow_node: tuple[str, float] | None = None
        self.failure: Failure | None = None


class NodeError(Exception):
    """A node raised while running (becomes ``execution_error``)."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


class Interrupted(Exception):
    """``/interrupt`` was seen while a node ran."""


class ComfyStandIn:
    """The server; ``url`` is its base URL. Use as a context manager."""

    def __init__(
        self, *, step_delay: float = 0.002, token: str | None = None, max_upload_mb: float = 100
    ) -> None:
        self.step_delay = step_delay
        # ComfyUI's --max-upload-size (MB): aiohttp answers 413 to a larger request body.
        self.max_upload_size = round(max_upload_mb * 1024 * 1024)
        self.token = token  # when set, every request needs "Authorization: Bearer <token>",
        # as a reverse proxy in front of ComfyUI would demand
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="comfy-standin", daemon=True
        )
        # The process's memory: lost on a restart.
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.pending: list[Run] = []
        self.running: Run | None = None
        self.history: dict[str, Any] = {}
        self.cache: dict[str, dict[str, Any]] = {}  # node signature → its UI output
        self.number = 0
        self.interrupt_requested = False
        self.executing: str | None = None  # the node running now
        # The disk: kept across restarts.
        self.files: dict[tuple[str, str, str], bytes] = {}  # (type, subfolder, name) → bytes
        self.counters: dict[tuple[str, str], int] = {}
        # Behaviour and what the server saw, for tests.
        self.silent = False
        self.big_image: bytes | None = None
        self.stall_prompt_s = 0.0  # POST /prompt hangs this long before doing anything
        self.late_answer_s = 0.0  # POST /prompt queues the run, then answers this late
        self.received: list[dict[str, Any]] = []
        self.interrupts: list[dict[str, Any]] = []
        self.queue_edits: list[dict[str, Any]] = []
        self.view_requests = 0
        self.uploads: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.up = False
        self._fail_next: str | None = None
        self._fail_times = 0
        self._fail_status = 503
        self._failure: Failure | None = None
        self._slow_next: float | None = None
        self._slow_node: tuple[str, float] | None = None
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Future[None] | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.thread.start()
        self._call(self._revive())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._kill())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    async def _start_front(self) -> None:
        app = web.Application(client_max_size=self.max_upload_size, middlewares=[self._auth])
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
                web.post("/upload/image", self._upload_image),
                web.post("/upload/mask", self._upload_mask),
                web.get("/ws", self._ws),
            ]
        )
        self._runner = web.AppRunner(app, shutdown_timeout=0.0)
        await self._runner.setup()
        # The same port after a restart, as a real server's configured port.
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.up = True

    async def _stop_front(self) -> None:
        """Close the port and every connection on it: connecting is refused from now on."""
        self.up = False
        await self._drop()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _revive(self) -> None:
        """Start the process: an empty queue, history and cache, then the port opens."""
        self._wake = asyncio.Event()
        self._worker = asyncio.ensure_future(self._work())
        await self._start_front()

    async def _kill(self) -> None:
        """The process ends: its port closes and everything it held in memory is gone."""
        await self._stop_front()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        self.pending.clear()
        self.running = None
        self.history.clear()
        self.cache.clear()
        self.interrupt_requested = False

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, text="401 Unauthorized")
        return await handler(request)

    # -- controls for tests -----------------------------------------------------------------

    def fail_next(
        self,
        kind: str,
        times: int = 20,
        *,
        node_class: str | None = None,
        message: str = CUDA_ERROR,
        exception_type: str = "RuntimeError",
        status: int = 503,
    ) -> None:
        """transient: the next ``times`` POST /prompt get a 503 (as from a reverse proxy
        while ComfyUI restarts: more than any retry policy waits out), or ``status`` (a
        proxy's 501 for a method it does not pass on); permanent: the next run raises
        ``execution_error`` in its first node of ``node_class`` (its sampler by default)
        with ``message``."""
        self._fail_next = kind
        self._fail_times = times
        self._fail_status = status
        if kind == "permanent":
            self._failure = Failure(node_class, message, exception_type)

    def slow_next(self, seconds: float, *, node_class: str | None = None) -> None:
        """The next run's sampler takes ``seconds`` (its steps spread over them); with
        ``node_class``, that node takes them instead, sending nothing meanwhile (a model
        load, a VAE decode), and an interrupt waits until it is done."""
        if node_class is None:
            self._slow_next = seconds
        else:
            self._slow_node = (node_class, seconds)

    def kill(self) -> None:
        """The process dies and stays down: the port refuses, queue and history are gone."""
        self._call(self._kill())

    def restart(self, down_s: float = 0.0) -> None:
        """Restart the process: down (refusing connections) for ``down_s`` seconds, then up
        on the same port with an empty queue, history and cache. Returns once it is down
        (or, with no ``down_s``, back up)."""

        async def restart() -> None:
            await self._kill()
            if down_s <= 0:
                await self._revive()
            else:
                self.loop.call_later(down_s, lambda: asyncio.ensure_future(self._revive()))

        self._call(restart())

    def outage(self, seconds: float) -> None:
        """The port refuses for ``seconds`` (a proxy in front restarts, a link drops) while
        ComfyUI itself runs on, its queue and history intact."""

        async def outage() -> None:
            await self._stop_front()
            self.loop.call_later(seconds, lambda: asyncio.ensure_future(self._start_front()))

        self._call(outage())

    def drop_sockets(self) -> None:
        """Close every websocket (the server goes on running)."""
        self._call(self._drop())

    def wait_until(self, predicate: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return False

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

    def _status(self, client_id: str) -> str:
        remaining = len(self.pending) + (1 if self.running else 0)
        return json.dumps(
            {
                "type": "status",
                "data": {"status": {"exec_info": {"queue_remaining": remaining}}, "sid": client_id},
            }
        )

    async def _broadcast_status(self) -> None:
        for client_id, socket in list(self.sockets.items()):
            if not self.silent and not socket.closed:
                await socket.send_str(self._status(client_id))

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
        return web.json_response({name: object_info(name, self.files) for name in NODES})

    async def _object_info_one(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        return web.json_response({name: object_info(name, self.files)} if name in NODES else {})

    async def _prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append(body)
        if self.stall_prompt_s:
            await asyncio.sleep(self.stall_prompt_s)
        if self._fail_next == "transient":
            self._fail_times -= 1
            if self._fail_times <= 0:
                self._fail_next = None
            reason = {501: "Not Implemented", 503: "Service Unavailable"}.get(self._fail_status, "")
            return web.Response(status=self._fail_status, text=f"{self._fail_status} {reason}")
        if "prompt" not in body:
            return web.json_response(
                {
                    "error": {
                        "type": "no_prompt",
                        "message": "No prompt provided",
                        "details": "",
                        "extra_info": {},
                    },
                    "node_errors": {},
                },
                status=400,
            )
        graph = body["prompt"]
        problem, node_errors, outputs = validate(graph, self.files)
        if problem is not None:
            return web.json_response(problem, status=400)
        prompt_id = body.get("prompt_id") or str(uuid.uuid4())
        self.number += 1
        run = Run(self.number, prompt_id, graph, body.get("client_id"), outputs)
        run.duration, self._slow_next = self._slow_next, None
        run.slow_node, self._slow_node = self._slow_node, None
        if self._fail_next == "permanent":
            run.failure, self._fail_next, self._failure = self._failure, None, None
        self.pending.append(run)
        await self._broadcast_status()
        assert self._wake is not None
        self._wake.set()
        if self.late_answer_s:
            await asyncio.sleep(self.late_answer_s)
        return web.json_response(
            {"prompt_id": prompt_id, "number": run.number, "node_errors": node_errors}
        )

    def _entry(self, run: Run) -> list[Any]:
        extra = {"client_id": run.client_id} if run.client_id else {}
        return [run.number, run.prompt_id, run.graph, extra, run.outputs]

    async def _queue(self, request: web.Request) -> web.Response:
        running = [self._entry(self.running)] if self.running else []
        pending = [self._entry(run) for run in reversed(self.pending)]  # a heap: unsorted
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _queue_edit(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.queue_edits.append(body)
        if body.get("clear"):
            self.pending.clear()
        for prompt_id in body.get("delete", []):
            self.pending = [run for run in self.pending if run.prompt_id != prompt_id]
        await self._broadcast_status()
        return web.Response(status=200)

    async def _interrupt(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        self.interrupts.append(body)
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
        kind = request.query.get("type", "output")
        if ".." in filename or ".." in subfolder or filename.startswith("/"):
            return web.Response(status=400)
        data = self.files.get((kind, subfolder, filename))
        if data is None:
            return web.Response(status=404)
        if request.method == "HEAD":  # FileResponse: the headers, and not one byte more
            return web.Response(
                headers={"Content-Type": "image/png", "Content-Length": str(len(data))}
            )
        self.view_requests += 1
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = len(data)
        await response.prepare(request)
        view = memoryview(data)
        for start in range(0, len(data), 1 << 16):
            await response.write(view[start : start + (1 << 16)])
        await response.write_eof()
        return response

    async def _upload_image(self, request: web.Request) -> web.Response:
        return self._image_upload(await request.post())

    async def _upload_mask(self, request: web.Request) -> web.Response:
        post = await request.post()

        def merge(image: web.FileField, key: tuple[str, str, str]) -> None:
            original = json.loads(post.get("original_ref"))  # type: ignore[arg-type]
            name = original["filename"]
            if name.startswith("/") or ".." in name:
                return  # the real handler returns a 400 here that nobody sends
            place = input_path(
                f"{name} [{original.get('type', 'output')}]" if not name.endswith("]") else name
            )
            subfolder = original.get("subfolder", "")
            if place is None or ".." in posixpath.normpath(subfolder).split("/"):
                return
            kind, _, base = place
            folder = posixpath.normpath(subfolder) if subfolder else ""
            data = self.files.get((kind, "" if folder == "." else folder, base))
            if data is None:
                return  # no original: nothing is stored, and the answer still names it
            with Image.open(io.BytesIO(data)) as picture:
                info = PngImagePlugin.PngInfo()
                for text_key, value in getattr(picture, "text", {}).items():
                    info.add_text(text_key, value)
                merged = picture.convert("RGBA")
            with Image.open(image.file) as mask:
                merged.putalpha(mask.convert("RGBA").getchannel("A"))
            out = io.BytesIO()
            merged.save(out, "PNG", compress_level=4, pnginfo=info)
            self.files[key] = out.getvalue()

        # Without original_ref, json.loads(None) raises in merge: aiohttp answers 500.
        return self._image_upload(post, merge)

    def _image_upload(self, post: Any, save: Any = None) -> web.Response:
        """server.py's image_upload, on this server's in-memory folders."""
        image = post.get("image")
        overwrite = post.get("overwrite")
        kind = post.get("type") or "input"
        if kind not in ("input", "temp", "output"):
            return web.Response(status=500, text="500 Internal Server Error")
        if not image:
            return web.Response(status=400)
        if not isinstance(image, web.FileField):  # a part without a file name: no .file
            return web.Response(status=500, text="500 Internal Server Error")
        filename = image.filename
        if not filename:
            return web.Response(status=400)
        subfolder = post.get("subfolder", "")
        root = f"/srv/ComfyUI/{kind}"
        folder = posixpath.join(root, posixpath.normpath(subfolder))
        path = posixpath.abspath(posixpath.join(folder, filename))
        if posixpath.commonpath((root, path)) != root:
            return web.Response(status=400)
        relative = posixpath.relpath(posixpath.dirname(path), root)
        place = "" if relative == "." else relative
        data = image.file.read()
        stem, extension = posixpath.splitext(filename)
        duplicate = False
        if overwrite not in ("true", "1"):
            number = 1
            while (kind, place, posixpath.basename(path)) in self.files:
                if self.files[(kind, place, posixpath.basename(path))] == data:
                    duplicate = True  # the same bytes under the same name: kept, not copied
                    break
                filename = f"{stem} ({number}){extension}"
                path = posixpath.join(posixpath.dirname(path), filename)
                number += 1
        key = (kind, place, posixpath.basename(path))
        self.uploads.append(
            {
                "endpoint": "mask" if save is not None else "image",
                "name": filename,
                "subfolder": subfolder,
                "type": kind,
                "overwrite": overwrite,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "duplicate": duplicate,
            }
        )
        if not duplicate:
            if save is not None:
                image.file.seek(0)
                save(image, key)
            else:
                self.files[key] = data
        return web.json_response({"name": filename, "subfolder": subfolder, "type": kind})

    def _is_changed(self, graph: dict[str, Any], node: str) -> str | None:
        """LoadImage's IS_CHANGED: the SHA-256 of the file it loads."""
        if graph[node]["class_type"] not in ("LoadImage", "LoadImageMask"):
            return None
        data = self._loaded(graph[node]["inputs"].get("image"))
        return hashlib.sha256(data).hexdigest() if data is not None else None

    def _loaded(self, name: Any) -> bytes | None:
        place = input_path(name) if isinstance(name, str) else None
        return self.files.get(place) if place is not None else None

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[client_id] = socket
        await socket.send_str(self._status(client_id))
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                data = json.loads(message.data)
                if data.get("type") == "feature_flags":
                    flags = {
                        "supports_preview_metadata": True,
                        "max_upload_size": self.max_upload_size,
                    }
                    await socket.send_str(json.dumps({"type": "feature_flags", "data": flags}))
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
                self.executing = None
                if self.running is run:
                    self.running = None

    async def _execute(self, run: Run) -> None:
        graph = run.graph
        messages: list[Any] = []
        outputs: dict[str, Any] = {}
        executed: list[str] = []

        async def send(kind: str, data: dict[str, Any]) -> None:
            data = {**data, "prompt_id": run.prompt_id}
            if kind.startswith("execution_"):
                messages.append([kind, data])
            await self._send(run.client_id, kind, data)

        order = run_order(graph, run.outputs)
        keys = signatures(graph, order, lambda node: self._is_changed(graph, node))
        # Classic caching: what the previous prompt computed, where this one is unchanged.
        self.cache = {key: value for key, value in self.cache.items() if key in keys.values()}
        cached = [node for node in order if keys[node] in self.cache]
        await send("execution_start", {"timestamp": _now()})
        await send("execution_cached", {"nodes": cached, "timestamp": _now()})
        states: dict[str, Any] = {}
        for node in order:
            kind = graph[node]["class_type"]
            if node in cached:
                if self.cache[keys[node]]:
                    outputs[node] = copy.deepcopy(self.cache[keys[node]])
                    await send(
                        "executed", {"node": node, "display_node": node, "output": outputs[node]}
                    )
                continue
            if self.interrupt_requested:
                await self._interrupted(run, node, kind, executed, outputs, send, messages)
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
            self.executing = node
            try:
                output = await self._run_node(run, node, send)
            except Interrupted:
                await self._interrupted(run, node, kind, executed, outputs, send, messages)
                return
            except NodeError as error:
                await send(
                    "execution_error",
                    {
                        "node_id": node,
                        "node_type": kind,
                        "executed": list(executed),
                        "exception_message": f"{error.message}\n",
                        "exception_type": error.exception_type,
                        "traceback": [
                            '  File "/srv/ComfyUI/execution.py", line 496, in execute\n',
                            f"    raise {error.exception_type}(...)\n",
                        ],
                        "current_inputs": _current_inputs(graph, node),
                        "current_outputs": list(executed),
                        "timestamp": _now(),
                    },
                )
                self._record(run, outputs, "error", messages)
                await self._end(run)
                return
            if output:
                outputs[node] = output
                await send("executed", {"node": node, "display_node": node, "output": output})
            self.cache[keys[node]] = output
            self.executing = None
            executed.append(node)
            states[node].update(state="finished", value=1)
        await send("execution_success", {"timestamp": _now()})
        self._record(run, outputs, "success", messages)
        await self._end(run)

    async def _interrupted(
        self,
        run: Run,
        node: str,
        kind: str,
        executed: list[str],
        outputs: dict[str, Any],
        send: Any,
        messages: list[Any],
    ) -> None:
        await send(
            "execution_interrupted",
            {"node_id": node, "node_type": kind, "executed": list(executed), "timestamp": _now()},
        )
        self._record(run, outputs, "error", messages)
        await self._end(run)

    async def _run_node(self, run: Run, node: str, send: Any) -> dict[str, Any]:
        """Run one node; its UI output (``{}`` for most nodes)."""
        graph = run.graph
        kind = graph[node]["class_type"]
        if run.slow_node is not None and run.slow_node[0] == kind:
            await asyncio.sleep(run.slow_node[1])  # no frames, no interrupt check inside
        if kind in ("LoadImage", "LoadImageMask"):
            self._load(graph[node]["inputs"]["image"])
        if kind in SAMPLER_NODES:
            await self._sample(run, node, send)
        if run.failure is not None and run.failure.hits(kind):
            failure, run.failure = run.failure, None
            raise NodeError(failure.exception_type, failure.message)
        if kind == "SaveLatent":
            subfolder, stem = self._place(graph[node]["inputs"]["filename_prefix"])
            name = f"{stem}_{self._count(subfolder, stem):05}_.latent"
            self.files[("output", subfolder, name)] = b"latent"
            return {"latents": [{"filename": name, "subfolder": subfolder, "type": "output"}]}
        if is_output(graph, node):
            return {"images": self._save_images(graph, node)}
        return {}

    def _load(self, name: str) -> None:
        """LoadImage's load_image: the path must be an image file (a folder passed validation)."""
        place = input_path(name)
        path = posixpath.join("/srv/ComfyUI", *(p for p in place or ("input", name) if p))
        data = self._loaded(name)
        if data is None:
            raise NodeError("IsADirectoryError", f"[Errno 21] Is a directory: '{path}'")
        try:
            with Image.open(io.BytesIO(data)) as picture:
                picture.load()
        except (OSError, SyntaxError) as exc:
            raise NodeError(
                "PIL.UnidentifiedImageError", f"cannot identify image file '{path}'"
            ) from exc

    def _place(self, prefix: str) -> tuple[str, str]:
        place = save_path(prefix)
        if isinstance(place, str):
            raise NodeError("Exception", place)
        return place

    def _count(self, subfolder: str, stem: str) -> int:
        self.counters[(subfolder, stem)] = self.counters.get((subfolder, stem), 0) + 1
        return self.counters[(subfolder, stem)]

    def _save_images(self, graph: dict[str, Any], node: str) -> list[dict[str, Any]]:
        kind = graph[node]["class_type"]
        if kind == "SaveImage":
            subfolder, stem = self._place(graph[node]["inputs"]["filename_prefix"])
            folder = "output"
        else:  # PreviewImage: a temporary file with a random prefix
            subfolder, folder = "", "temp"
            stem = "ComfyUI_temp_" + "".join(random.choices(string.ascii_lowercase, k=5))
        batch = 1
        latent = upstream(graph, node, LATENT_NODES)
        if latent is not None:
            batch = graph[latent]["inputs"]["batch_size"]
        repeat = upstream(graph, node, ("RepeatLatentBatch",))
        if repeat is not None:
            batch *= graph[repeat]["inputs"]["amount"]
        images = []
        for index in range(batch):
            name = f"{stem}_{self._count(subfolder, stem):05}_.png"
            self.files[(folder, subfolder, name)] = self._image(graph, node, index)
            images.append({"filename": name, "subfolder": subfolder, "type": folder})
        return images

    def _image(self, graph: dict[str, Any], save_node: str, index: int) -> bytes:
        if self.big_image is not None:
            return self.big_image
        source = upstream(graph, save_node, SAMPLER_NODES + GENERATOR_NODES)
        seed, width, height = 0, 64, 64
        if source is not None and graph[source]["class_type"] in GENERATOR_NODES:
            inputs = graph[source]["inputs"]
            seed = inputs.get("seed", 0)
            width, height = map(int, inputs.get("size", "1024x1024").split("x"))
        elif source is not None:
            inputs = graph[source]["inputs"]
            seed = inputs.get("seed", 0)
            if is_link(inputs.get("noise")):
                seed = graph[inputs["noise"][0]]["inputs"].get("noise_seed", 0)
        latent = upstream(graph, save_node, LATENT_NODES)
        loader = upstream(graph, save_node, IMAGE_LOADERS)
        start = b""
        if latent is not None:
            width = graph[latent]["inputs"]["width"]
            height = graph[latent]["inputs"]["height"]
        elif loader is not None:  # image to image: the input's size
            start = self._loaded(graph[loader]["inputs"]["image"]) or b""
            with Image.open(io.BytesIO(start)) as picture:
                width, height = picture.size
        digest = hashlib.sha256(
            f"{seed}/{index}".encode() + hashlib.sha256(start).digest()
        ).digest()
        image = Image.new("RGB", (width, height), tuple(digest[:3]))
        info = PngImagePlugin.PngInfo()
        info.add_text("prompt", json.dumps(graph))  # as ComfyUI's SaveImage writes it
        out = io.BytesIO()
        image.save(out, "PNG", pnginfo=info)
        return out.getvalue()

    async def _sample(self, run: Run, node: str, send: Any) -> None:
        inputs = run.graph[node]["inputs"]
        steps = inputs.get("steps")
        if not isinstance(steps, int):
            sigmas = inputs.get("sigmas")
            steps = run.graph[sigmas[0]]["inputs"].get("steps", 4) if is_link(sigmas) else 4
        delay = (run.duration / steps) if run.duration else self.step_delay
        for step in range(1, steps + 1):
            await asyncio.sleep(delay)
            if self.interrupt_requested:
                raise Interrupted()
            await send("progress", {"value": step, "max": steps, "node": node})
            if step % 2 == 0:
                preview = io.BytesIO()
                Image.new("RGB", (8, 8), (step % 256, 0, 0)).save(preview, "PNG")
                await self._send_bytes(run.client_id, struct.pack(">II", 1, 2) + preview.getvalue())

    def _record(self, run: Run, outputs: dict[str, Any], status: str, messages: list[Any]) -> None:
        if self.running is not run:
            return  # the server restarted meanwhile: this run is forgotten
        self.history[run.prompt_id] = {
            "prompt": self._entry(run),
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


def _now() -> int:
    return int(time.time() * 1000)


def _current_inputs(graph: dict[str, Any], node: str) -> dict[str, list[Any]]:
    """What ComfyUI reports a failing node received: tensors as their reprs."""
    shown: dict[str, list[Any]] = {}
    for name, value in graph[node].get("inputs", {}).items():
        if is_link(value):
            shown[name] = ["tensor([[[[0.1216, 0.1294, 0.1333],\n          ...]]])"]
        else:
            shown[name] = [value]
    return shown

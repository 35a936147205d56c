"""An AUTOMATIC1111 / Forge WebUI adapter and its loopback stand-in, for the suite's own tests.

The upstream has no run id: ``POST /sdapi/v1/txt2img`` (or ``/sdapi/v1/img2img``, with
``init_images``, ``mask`` and ``denoising_strength``, all base64 in the JSON body) blocks
until the images exist and answers them as base64, with the seeds it used in ``info``; ``POST /sdapi/v1/interrupt``
stops whatever is running, and the blocked call then returns early. ``--api-auth
user:password`` puts the API behind HTTP Basic auth. It is the shape the issue's author
wrote from the docs alone, done right; ``test_conformance_suite.py`` breaks it one defect
at a time.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from typing import Any, ClassVar

import httpx

from imagen import (
    Backend,
    BackendConfig,
    Context,
    GeneratedImage,
    PermanentBackendError,
    Progress,
    Request,
    Result,
    TransientBackendError,
    run_blocking,
)
from imagen.inputs import InputImage, InputSupport
from imagen.retry import RETRY_SETTINGS, call_with_retry, is_transient_status, read_policy
from imagen.testing import LoopbackHandler, LoopbackServer

KEYS = ("base_url", "auth_env", "timeout_s", *RETRY_SETTINGS)
OPTIONS = ("sampler_name", "cfg_scale")
AUTH = "webui-user:correct-horse-battery"


# -- the adapter ----------------------------------------------------------------------------


class SdWebUIBackend(Backend):
    """AUTOMATIC1111 / Forge: txt2img through its HTTP API."""

    reproducible: ClassVar[bool] = False

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        config.check_keys(KEYS)
        base_url = config.require("base_url", str)
        if not base_url.startswith(("http://", "https://")):
            raise config.error("must be an http:// or https:// URL", "base_url")
        auth = config.optional_credential("auth_env")  # --api-auth is optional
        if auth is not None and ":" not in auth:
            raise config.error("the variable must hold user:password, as --api-auth", "auth_env")
        self.timeout_s = config.get("timeout_s", float, 600.0)
        if self.timeout_s <= 0:
            raise config.error("must be more than 0", "timeout_s")
        self.retry = read_policy(config)
        user, _, password = (auth or "").partition(":")
        self.client = httpx.Client(
            base_url=base_url.rstrip("/"),
            auth=httpx.BasicAuth(user, password) if auth else None,
            timeout=httpx.Timeout(self.timeout_s, connect=10.0),
        )

    def close(self) -> None:
        self.client.close()

    def input_support(self) -> InputSupport:
        return InputSupport(images=1, mask=True, strength=True)

    def generate(self, request: Request, context: Context) -> Result:
        context.check()
        payload = self.payload(request)
        context.progress(Progress("started"))
        answer = call_with_retry(
            lambda: self.txt2img(payload, context),
            what="generating the images",
            context=context,
            policy=self.retry,
            where_to_check="the WebUI's console",
        )
        info = json.loads(answer.get("info") or "{}")
        seeds = info.get("all_seeds") or []
        images = [
            GeneratedImage.from_bytes(
                base64.b64decode(data), "image/png", seed=seeds[i] if i < len(seeds) else None
            )
            for i, data in enumerate(answer.get("images") or [])
        ]
        context.progress(Progress("finished"))
        return Result(images, self.metadata(request, info))

    def payload(self, request: Request) -> dict[str, Any]:
        payload = self.text_payload(request)
        images, masks = request.inputs_of("image"), request.inputs_of("mask")
        if images:
            # The API takes images inline only: each file is read whole, once.
            payload["init_images"] = [_base64(item) for item in images]
            if request.strength is not None:
                payload["denoising_strength"] = request.strength
        if masks:
            payload["mask"] = _base64(masks[0])
        return payload

    def text_payload(self, request: Request) -> dict[str, Any]:
        return {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "width": request.width or 512,
            "height": request.height or 512,
            "steps": request.steps or 20,
            "seed": request.seed if request.seed is not None else -1,
            "batch_size": request.count,
            **{key: request.options[key] for key in OPTIONS if key in request.options},
        }

    def txt2img(self, payload: dict[str, Any], context: Context) -> dict[str, Any]:
        route = "/sdapi/v1/img2img" if "init_images" in payload else "/sdapi/v1/txt2img"
        return run_blocking(
            lambda: self.call("POST", route, json=payload),
            context,
            interrupt=self.interrupt,
            timeout_s=self.timeout_s,
            what="generating the images",
        )

    def interrupt(self) -> None:
        # No run id: /interrupt stops whatever the WebUI is running (ours, one at a time).
        self.client.post("/sdapi/v1/interrupt", timeout=5.0)

    def metadata(self, request: Request, info: dict[str, Any]) -> dict[str, Any]:
        metadata = {
            "model": info.get("sd_model_name"),
            "model_hash": info.get("sd_model_hash"),
            "sampler": info.get("sampler_name"),
            "cfg_scale": info.get("cfg_scale"),
        }
        ignored = [f"options.{key}" for key in request.options if key not in OPTIONS]
        if ignored:
            metadata["ignored"] = ignored
        return {key: value for key, value in metadata.items() if value is not None}

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One API call, its failures translated into imagen's error types."""
        try:
            response = self.client.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TransientBackendError(f"cannot reach the WebUI: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:  # sent: it may be running
            raise TransientBackendError(f"{path}: {type(exc).__name__}", sent=True) from exc
        if response.status_code < 400:
            return response.json()
        raise self.status_error(response, path)

    def status_error(self, response: httpx.Response, path: str) -> Exception:
        try:
            body = response.json()
            detail = body.get("detail") or body.get("errors") if isinstance(body, dict) else body
        except ValueError:
            detail = response.reason_phrase
        message = f"{path}: {response.status_code} {detail}"
        if is_transient_status(response.status_code):
            return TransientBackendError(message)
        return PermanentBackendError(message)


# -- the stand-in ---------------------------------------------------------------------------


def _base64(item: InputImage) -> str:
    with item.open() as stream:
        return base64.b64encode(stream.read()).decode("ascii")


def png(seed: int, width: int, height: int) -> bytes:
    from PIL import Image

    colour = ((seed * 97) % 256, (seed * 57) % 256, (seed * 17) % 256)
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


class SdWebUIStandIn(LoopbackServer):
    """A loopback WebUI started with ``--api --api-auth user:password``."""

    submission_routes = ("POST /sdapi/v1/txt2img", "POST /sdapi/v1/img2img")
    cancel_routes = ("POST /sdapi/v1/interrupt",)

    def __init__(self, auth: str | None = AUTH) -> None:
        super().__init__(_Handler)
        self.auth = auth
        self.interrupted = threading.Event()
        self.last_seed: int | None = None
        self._fail: str | None = None
        self._fail_times = 0
        self._slow: float | None = None
        self._lock = threading.Lock()

    def fail_next(self, kind: str, times: int = 20) -> None:
        self._fail, self._fail_times = kind, times

    def slow_next(self, seconds: float) -> None:
        self._slow = seconds

    def stop(self) -> None:
        self.interrupted.set()  # release a txt2img held by slow_next
        super().stop()

    def take(self) -> tuple[str | None, float]:
        with self._lock:
            failure = self._fail
            if failure == "transient":
                self._fail_times -= 1
                if self._fail_times <= 0:
                    self._fail = None
            elif failure:
                self._fail = None
            slow, self._slow = self._slow or 0.0, None
            return failure, slow


class _Handler(LoopbackHandler):
    server: SdWebUIStandIn

    def _authorized(self) -> bool:
        if self.server.auth is None:
            return True
        expected = "Basic " + base64.b64encode(self.server.auth.encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send(401, {"detail": "Incorrect credentials"}, {"WWW-Authenticate": "Basic"})
            return False
        return True

    def _images_decode(self, body: dict[str, Any]) -> bool:
        """img2img's init_images (and mask) decode as images, as the WebUI decodes them."""
        from PIL import Image

        pictures = body.get("init_images") or []
        if body.get("mask"):
            pictures = [*pictures, body["mask"]]
        try:
            if not body.get("init_images"):
                raise ValueError("init_images is required")
            for data in pictures:
                with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as picture:
                    picture.verify()
        except Exception as exc:  # noqa: BLE001 (the WebUI answers 500 for any of them)
            self.send(500, {"error": type(exc).__name__, "detail": "", "errors": str(exc)})
            return False
        return True

    def do_POST(self) -> None:
        body = self.read_json()
        if not self._authorized():
            return
        if self.path == "/sdapi/v1/interrupt":
            self.server.interrupted.set()
            self.send(200, {})
            return
        if self.path not in ("/sdapi/v1/txt2img", "/sdapi/v1/img2img"):
            self.send(404, {"detail": "Not Found"})
            return
        if self.path == "/sdapi/v1/img2img" and not self._images_decode(body):
            return
        failure, slow = self.server.take()
        if failure == "transient":
            self.send(503, b"<html><body>503 Service Unavailable</body></html>", {}, "text/html")
            return
        if failure == "permanent":
            detail = [{"loc": ["body", "prompt"], "msg": "rejected", "type": "value_error"}]
            self.send(422, {"detail": detail})
            return
        self.server.interrupted.clear()
        if slow:
            self.server.interrupted.wait(slow)
        seed = body.get("seed", -1)
        seed = 1 if seed == -1 else seed
        self.server.last_seed = seed
        count = body.get("batch_size", 1)
        seeds = [seed + i for i in range(count)]
        width, height = body.get("width", 512), body.get("height", 512)
        info = {
            "all_seeds": seeds,
            "sd_model_name": "sd_xl_base_1.0",
            "sd_model_hash": "31e35c80fc",
            "sampler_name": body.get("sampler_name", "Euler a"),
            "cfg_scale": body.get("cfg_scale", 7.0),
        }
        images = [base64.b64encode(png(s, width, height)).decode() for s in seeds]
        self.send(200, {"images": images, "parameters": body, "info": json.dumps(info)})

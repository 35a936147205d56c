"""A loopback Replicate API, as the real ``replicate`` 1.0.7 SDK sees it (``shared/protocols.md``).

- ``POST /v1/models/{owner}/{name}/predictions`` (official models) and ``POST
  /v1/predictions`` with ``version`` create a prediction: 201 with ``id``, ``model``,
  ``version`` (a string), ``status: starting``, ``urls``; ``Prefer: wait`` is honoured.
- ``GET /v1/predictions/{id}`` moves it through ``starting`` → ``processing`` (logs with a
  progress bar) → ``succeeded`` with ``output`` (a list of URLs for Flux schnell/dev and
  SDXL, one URL for flux-1.1-pro, or ``data:`` URIs), ``metrics.predict_time``.
- ``POST /v1/predictions/{id}/cancel`` cancels; ``GET /v1/models/{o}/{n}/versions/{v}``.
- Errors are problem JSON ``{title, detail, status}``: 401 without the token, 404 for an
  unknown model, 422 for invalid input, 429 and 503 when told to.
- Output files are served under ``/files/`` without needing a token; the stand-in records
  whether a download carried one.
- ``POST /v1/files`` takes a multipart upload (field ``content``, with a file name and a
  content type; optional ``metadata`` JSON) of at most 100 MiB (413 beyond) and answers
  201 with the file object (``id``, ``name``, ``content_type``, ``size``, ``etag``,
  ``checksums``, ``metadata``, ``created_at``, ``expires_at``, ``urls.get``). ``GET`` of
  ``urls.get`` (the object) and of ``…/download`` (the bytes) need the token
  (sdks.replicate.com/resources/files).
- Each model has its input schema: a required input missing, or a file input that is not
  a URI, is a 422 with the detail. An input the model does not have is dropped without a
  word, as Replicate has always done (replicate/cog#2943 made Cog drop them again after
  it briefly refused them): the stand-in records what it dropped, so a test can see a
  wrong mapping. File inputs are fetched when the prediction is created (an uploaded
  file's ``urls.get``, or a ``data:`` URL); one that can't be fetched fails the
  prediction. The stand-in records what each file input held (size, SHA-256).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
import uuid
from typing import Any

from PIL import Image

from imagen.testing import LoopbackHandler, LoopbackServer

_FLUX = {
    "prompt", "aspect_ratio", "num_outputs", "seed", "output_format", "output_quality",
    "go_fast", "megapixels", "disable_safety_checker", "num_inference_steps",
}  # fmt: skip
_KONTEXT = {
    "prompt", "input_image", "aspect_ratio", "seed", "prompt_upsampling", "safety_tolerance",
    "output_format",
}  # fmt: skip
_SDXL = {
    "prompt", "negative_prompt", "width", "height", "num_outputs", "num_inference_steps",
    "guidance_scale", "scheduler", "seed", "refine", "high_noise_frac", "refine_steps",
    "apply_watermark", "lora_scale", "prompt_strength", "image", "mask",
    "disable_safety_checker", "output_format",
}  # fmt: skip
# Per model: its inputs (from its API page), the required ones, the file (URI) ones.
MODELS: dict[str, dict[str, Any]] = {
    "black-forest-labs/flux-schnell": {
        "single": False, "max_steps": 4, "ratios": True, "inputs": _FLUX,
    },
    "black-forest-labs/flux-dev": {
        "single": False, "max_steps": 50, "ratios": True,
        "inputs": _FLUX | {"guidance", "image", "prompt_strength"}, "files": {"image"},
    },
    "black-forest-labs/flux-1.1-pro": {
        "single": True, "max_steps": None, "ratios": True,
        "inputs": {
            "prompt", "aspect_ratio", "width", "height", "seed", "safety_tolerance",
            "prompt_upsampling", "output_format", "output_quality", "image_prompt",
        },
        "files": {"image_prompt"},
    },
    "stability-ai/sdxl": {
        "single": False, "max_steps": 500, "ratios": False, "inputs": _SDXL,
        "files": {"image", "mask"},
    },
    "black-forest-labs/flux-kontext-pro": {
        "single": True, "max_steps": None, "ratios": True, "inputs": _KONTEXT,
        "files": {"input_image"},
    },
    "black-forest-labs/flux-kontext-max": {
        "single": True, "max_steps": None, "ratios": True, "inputs": _KONTEXT,
        "files": {"input_image"},
    },
    "black-forest-labs/flux-kontext-dev": {
        "single": True, "max_steps": 50, "ratios": True,
        "inputs": (_KONTEXT - {"prompt_upsampling", "safety_tolerance"})
        | {"num_inference_steps", "guidance", "output_quality", "go_fast",
           "disable_safety_checker"},
        "files": {"input_image"}, "required": {"prompt", "input_image"},
    },
    "black-forest-labs/flux-fill-pro": {
        "single": True, "max_steps": None, "ratios": False,
        "inputs": {
            "prompt", "image", "mask", "steps", "guidance", "outpaint", "seed",
            "safety_tolerance", "prompt_upsampling", "output_format",
        },
        "files": {"image", "mask"}, "required": {"image"},
    },
    "black-forest-labs/flux-fill-dev": {
        "single": False, "max_steps": 50, "ratios": False,
        "inputs": _FLUX | {"image", "mask", "guidance", "lora_weights", "lora_scale"},
        "files": {"image", "mask"}, "required": {"prompt", "image"},
    },
    "black-forest-labs/flux-redux-dev": {
        "single": False, "max_steps": 50, "ratios": True,
        "inputs": (_FLUX - {"prompt"}) | {"redux_image", "guidance"},
        "files": {"redux_image"}, "required": {"redux_image"},
    },
    # A fine-tune with the flux-schnell inputs and more (a LoRA) that imagen has no list for.
    "acme/flux-schnell-lora": {
        "single": False, "max_steps": 4, "ratios": True,
        "inputs": _FLUX | {"lora_weights", "lora_scale"},
    },
}  # fmt: skip
MAX_FILE_BYTES = 100 * 1024 * 1024
"""The largest file ``POST /v1/files`` takes (Replicate's documented 100 MiB)."""
OFFICIAL = {model for model in MODELS if model.startswith("black-forest-labs/")}
VERSIONS = {  # newest first, as the API lists them
    "stability-ai/sdxl": [
        "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc",
        "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b",
    ],
    "acme/flux-schnell-lora": ["a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"],
}
TOKEN = "r8_loopback_test_token_0123456789"


def _version(version_id: str, created: str, model: str | None = None) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Output": {"type": "array", "items": {"type": "string", "format": "uri"}}
    }
    if model in MODELS:
        files = MODELS[model].get("files", set())
        schemas["Input"] = {
            "type": "object",
            "properties": {
                key: {"type": "string", "format": "uri"} if key in files else {"title": key}
                for key in sorted(MODELS[model]["inputs"])
            },
            "required": sorted(MODELS[model].get("required", {"prompt"})),
        }
    return {
        "id": version_id,
        "created_at": created,
        "cog_version": "0.8.6",
        "openapi_schema": {"components": {"schemas": schemas}},
    }


def _model(model: str) -> dict[str, Any]:
    owner, name = model.split("/")
    latest = VERSIONS.get(model, [f"dp-{uuid.uuid5(uuid.NAMESPACE_URL, model).hex}"])[0]
    return {
        "url": f"https://replicate.com/{model}",
        "owner": owner,
        "name": name,
        "description": f"{name}, on the loopback stand-in",
        "visibility": "public",
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": 1234,
        "cover_image_url": None,
        "default_example": None,
        "latest_version": _version(latest, "2024-03-01T00:00:00Z", model),
    }


SDXL_VERSION = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"
# The pixels flux-schnell and flux-dev make for each aspect ratio (at 1 megapixel).
FLUX_SIZES = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "3:4": (896, 1152),
    "4:3": (1152, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
RATIOS = {"1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21", "custom"}
KONTEXT_RATIOS = (RATIOS - {"custom"}) | {"2:1", "1:2", "match_input_image"}


def _problem(status: int, title: str, detail: str) -> tuple[int, dict[str, Any], dict]:
    return status, {"title": title, "detail": detail, "status": status}, {}


def _multipart(body: bytes, content_type: str) -> dict[str, tuple[dict[str, str], bytes]]:
    """The parts of a multipart/form-data body, by name: (headers, content)."""
    if "boundary=" not in content_type:
        return {}
    boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"').encode()
    parts = {}
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        if 'name="' not in disposition:
            continue
        name = disposition.split('name="', 1)[1].split('"', 1)[0]
        parts[name] = (headers, content.removesuffix(b"\r\n"))
    return parts


def _filename(disposition: str) -> str | None:
    if 'filename="' not in disposition:
        return None
    return disposition.split('filename="', 1)[1].rsplit('"', 1)[0]


class Prediction:
    def __init__(self, model: str, version: str, inputs: dict[str, Any], duration: float) -> None:
        self.id = uuid.uuid4().hex[:26]
        self.model = model
        self.version = version
        self.input = inputs
        self.created = time.monotonic()
        self.duration = duration
        self.canceled = False
        self.fail: str | None = None
        self.aborted = False
        self.dropped: list[str] = []  # inputs the model does not have
        self.seen: dict[str, dict[str, Any]] = {}  # file inputs as the model fetched them

    def status(self, reading: bool = True) -> str:
        if self.aborted and reading:
            return "aborted"  # its deadline passed before it started: seen on the next read
        if self.canceled:
            return "canceled"
        elapsed = time.monotonic() - self.created
        if elapsed < self.duration * 0.2:
            return "starting"
        if elapsed < self.duration:
            return "processing"
        return "failed" if self.fail else "succeeded"


def _png(seed: int, index: int, width: int, height: int, fmt: str = "png") -> bytes:
    colour = ((seed * 37 + index * 101) % 256, (seed * 11) % 256, (index * 53 + 7) % 256)
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, fmt.upper().replace("JPG", "JPEG"))
    return out.getvalue()


class ReplicateStandIn(LoopbackServer):
    """The stand-in server; its ``url`` is the SDK's ``base_url``."""

    submission_routes = ("POST /v1/models/*/predictions", "POST /v1/predictions")
    cancel_routes = ("POST /v1/predictions/*/cancel",)

    def __init__(self, token: str) -> None:
        super().__init__(_Handler)
        self.token = token
        self.predictions: dict[str, Prediction] = {}
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.file_requests: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        self.uploads: dict[str, dict[str, Any]] = {}  # POST /v1/files: the file objects
        self.uploaded: dict[str, bytes] = {}  # ... and their bytes, by file id
        self.upload_parts: list[dict[str, Any]] = []  # the form of every upload, as sent
        self.max_file_bytes = MAX_FILE_BYTES
        self.data_uris = False
        self.last_seed: int | None = None
        self.big_output: bytes | None = None
        self.stall_create_s = 0.0
        self._fail: str | None = None
        self._fail_times = 0
        self._slow: float | None = None
        self._get_failures: list[tuple[int, dict[str, str]]] = []
        self._create_failures: list[tuple[int, dict[str, str], str]] = []
        self._abort = False

    # -- controls --------------------------------------------------------------------------

    def fail_next(self, kind: str, times: int = 20) -> None:
        """transient: the next ``times`` creates answer 503; permanent: the next prediction
        ends ``failed`` with the model's error."""
        self._fail, self._fail_times = kind, times

    def slow_next(self, seconds: float) -> None:
        self._slow = seconds

    def fail_gets(self, status: int, times: int, headers: dict[str, str] | None = None) -> None:
        """The next ``times`` prediction GETs answer ``status`` (with ``headers``)."""
        self._get_failures += [(status, headers or {})] * times

    def fail_create(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        self._create_failures.append((status, headers or {}, detail))

    def abort_next(self) -> None:
        self._abort = True

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, path in self.requests if m == method and path.startswith(prefix))

    # -- behaviour -------------------------------------------------------------------------

    def create(
        self, model: str, version: str, inputs: dict[str, Any]
    ) -> Prediction | tuple[int, Any, dict]:
        with self.lock:
            if self._create_failures:
                status, headers, detail = self._create_failures.pop(0)
                return (
                    status,
                    {"title": "Request failed", "detail": detail, "status": status},
                    headers,
                )
            if self._fail == "transient":
                self._fail_times -= 1
                if self._fail_times <= 0:
                    self._fail = None
                return (
                    503,
                    {"title": "Service Unavailable", "detail": "Try again later", "status": 503},
                    {},
                )
            spec = MODELS.get(model)
            if spec is None:
                return (
                    404,
                    {
                        "title": "Not found",
                        "detail": "The requested resource could not be found.",
                        "status": 404,
                    },
                    {},
                )
            problems = []
            for key in sorted(spec.get("required", {"prompt"}) - set(inputs)):
                problems.append(f"- input: {key} is required")
            for key in sorted(spec.get("files", set()) & set(inputs)):
                value = inputs[key]
                if not isinstance(value, str) or not value.startswith(
                    ("http://", "https://", "data:")
                ):
                    problems.append(f"- input.{key}: Does not match format 'uri'")
            steps = inputs.get("num_inference_steps")
            if spec["max_steps"] and isinstance(steps, int) and steps > spec["max_steps"]:
                problems.append(
                    f"- input.num_inference_steps: Must be less than or equal to {spec['max_steps']}"
                )
            ratios = KONTEXT_RATIOS if "input_image" in spec["inputs"] else RATIOS
            if spec["ratios"] and inputs.get("aspect_ratio") not in (None, *ratios):
                problems.append(
                    f"- input.aspect_ratio: aspect_ratio must be one of {sorted(ratios)}"
                )
            outputs = inputs.get("num_outputs", 1)
            if not isinstance(outputs, int) or not 1 <= outputs <= 4:
                problems.append("- input.num_outputs: Must be between 1 and 4")
            if "prompt" in inputs and not inputs.get("prompt"):
                problems.append("- input.prompt: prompt is required")
            strength = inputs.get("prompt_strength")
            if (
                "prompt_strength" in spec["inputs"]
                and strength is not None
                and not (isinstance(strength, int | float) and 0 <= strength <= 1)
            ):
                problems.append("- input.prompt_strength: Must be between 0 and 1")
            if problems:
                return (
                    422,
                    {
                        "title": "Input validation failed",
                        "detail": "\n".join(problems),
                        "status": 422,
                    },
                    {},
                )
            known = {key: value for key, value in inputs.items() if key in spec["inputs"]}
            prediction = Prediction(model, version, known, self._slow or 0.1)
            prediction.dropped = sorted(set(inputs) - set(known))
            self._slow = None
            for key in sorted(spec.get("files", set()) & set(known)):
                data = self._fetch(known[key])
                if data is None:
                    prediction.fail = f"Failed to download the file at input.{key}"
                    continue
                prediction.seen[key] = {
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "size_px": Image.open(io.BytesIO(data)).size,
                }
            if self._fail == "permanent":
                prediction.fail, self._fail = (
                    "NSFW content detected. Try running it again, or try a different prompt.",
                    None,
                )
            if self._abort:
                prediction.aborted, self._abort = True, False
            self.predictions[prediction.id] = prediction
            self.last_seed = inputs.get("seed")
            return prediction

    def _fetch(self, url: str) -> bytes | None:
        """What the model gets from a file input: an upload of this account, or a data URL."""
        if url.startswith("data:"):
            try:
                return base64.b64decode(url.partition(",")[2], validate=True)
            except ValueError:
                return None
        prefix = f"{self.url}/v1/files/"
        if url.startswith(prefix):
            return self.uploaded.get(url.removeprefix(prefix))
        return None  # loopback only: nothing else can be fetched

    def upload(
        self, content_type: str, body: bytes, authorization: str | None
    ) -> tuple[int, Any, dict]:
        """``POST /v1/files``: store the ``content`` part, answer the file object."""
        if len(body) > self.max_file_bytes + 64 * 1024:  # the form's headers, at most
            return _problem(
                413,
                "Request Entity Too Large",
                f"The file is larger than the {self.max_file_bytes // (1024 * 1024)} MiB allowed",
            )
        parts = _multipart(body, content_type)
        if "content" not in parts:
            return _problem(400, "Bad Request", "The request must include the file's content")
        headers, data = parts["content"]
        name = _filename(headers.get("content-disposition", ""))
        self.upload_parts.append(
            {
                "fields": sorted(parts),
                "filename": name,
                "content_type": headers.get("content-type"),
                "authorization": authorization,
            }
        )
        if not name or len(name.encode()) > 255:
            return _problem(400, "Bad Request", "The file name is required (at most 255 bytes)")
        if len(data) > self.max_file_bytes:
            return _problem(
                413,
                "Request Entity Too Large",
                f"The file is larger than the {self.max_file_bytes // (1024 * 1024)} MiB allowed",
            )
        metadata: Any = {}
        if "metadata" in parts:
            try:
                metadata = json.loads(parts["metadata"][1])
            except ValueError:
                return _problem(400, "Bad Request", "metadata must be valid JSON")
        file_id = uuid.uuid4().hex[:27]
        answer = {
            "id": file_id,
            "name": name,
            "content_type": headers.get("content-type") or "application/octet-stream",
            "size": len(data),
            "etag": hashlib.md5(data).hexdigest(),
            "checksums": {
                "sha256": hashlib.sha256(data).hexdigest(),
                "md5": hashlib.md5(data).hexdigest(),
            },
            "metadata": metadata,
            "created_at": "2026-11-25T08:00:00.000Z",
            "expires_at": "2026-11-26T08:00:00.000Z",
            "urls": {"get": f"{self.url}/v1/files/{file_id}"},
        }
        with self.lock:
            self.uploads[file_id] = answer
            self.uploaded[file_id] = data
        return 201, answer, {}

    def body(self, prediction: Prediction, reading: bool = True) -> dict[str, Any]:
        status = prediction.status(reading)
        base = self.url
        answer: dict[str, Any] = {
            "id": prediction.id,
            "model": prediction.model,
            "version": prediction.version,
            "input": prediction.input,
            "logs": "",
            "output": None,
            "data_removed": False,
            "error": None,
            "status": status,
            "source": "api",
            "created_at": "2026-11-25T08:00:00.000Z",
            "started_at": None,
            "completed_at": None,
            "urls": {
                "get": f"{base}/v1/predictions/{prediction.id}",
                "cancel": f"{base}/v1/predictions/{prediction.id}/cancel",
                "web": f"https://replicate.com/p/{prediction.id}",
            },
            "metrics": {},
        }
        if status == "processing":
            done = min(4, int(4 * (time.monotonic() - prediction.created) / prediction.duration))
            answer["logs"] = (
                f"Using seed: {prediction.input.get('seed')}\n{done * 25:3d}%|##  | {done}/4 [00:01<00:01]\n"
            )
        if status == "failed":
            answer["error"] = prediction.fail
        if status == "succeeded":
            answer["logs"] = (
                f"Using seed: {prediction.input.get('seed')}\n100%|####| 4/4 [00:01<00:00]\n"
            )
            answer["output"] = self._outputs(prediction)
            answer["metrics"] = {
                "predict_time": round(prediction.duration * 0.8, 3),
                "image_count": len(answer["output"]) if isinstance(answer["output"], list) else 1,
            }
            answer["completed_at"] = "2026-11-25T08:00:01.100Z"
        return answer

    def _outputs(self, prediction: Prediction) -> Any:
        inputs = prediction.input
        fmt = inputs.get("output_format", "png")
        count = inputs.get("num_outputs", 1)
        width, height = FLUX_SIZES.get(inputs.get("aspect_ratio"), (64, 64))
        width = inputs.get("width") or width
        height = inputs.get("height") or height
        source = prediction.seen.get("input_image") or prediction.seen.get("image")
        if source and inputs.get("aspect_ratio") in (None, "match_input_image"):
            width, height = source["size_px"]  # an edit keeps its image's size
        urls = []
        for index in range(count):
            name = f"{prediction.id}/out-{index}.{fmt}"
            if name not in self.files:
                data = self.big_output or _png(inputs.get("seed") or 0, index, width, height, fmt)
                self.files[name] = data
            if self.data_uris:
                mime = "image/jpeg" if fmt == "jpg" else f"image/{fmt}"
                urls.append(f"data:{mime};base64,{base64.b64encode(self.files[name]).decode()}")
            else:
                urls.append(f"{self.url}/files/{name}")
        return urls[0] if MODELS[prediction.model]["single"] else urls


class _Handler(LoopbackHandler):
    server: ReplicateStandIn
    _send = LoopbackHandler.send

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            self._send(
                401,
                {
                    "title": "Unauthenticated",
                    "detail": "You did not pass a valid authentication token",
                    "status": 401,
                },
            )
            return False
        return True

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path))
        if not self._authorized():
            return
        if self.path == "/v1/files":
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer, headers = self.server.upload(
                self.headers.get("Content-Type", ""), data, self.headers.get("Authorization")
            )
            kind = "application/json" if status < 400 else "application/problem+json"
            self._send(status, answer, headers, kind)
            return
        body = self.read_json()
        parts = self.path.strip("/").split("/")
        stall = self.server.stall_create_s if parts[-1] == "predictions" else 0.0
        if stall and not self.server.pause(stall):
            self.close_connection = True  # stopped while holding the request: hang up
            return
        if parts[:2] == ["v1", "models"] and parts[-1] == "predictions" and len(parts) == 5:
            self._create(f"{parts[2]}/{parts[3]}", "dp-4d0bcc010b3049749a251855f12800be", body)
        elif parts == ["v1", "predictions"]:
            version = body.get("version", "")
            model = "stability-ai/sdxl" if version == SDXL_VERSION else "unknown/model"
            self._create(model, version, body)
        elif len(parts) == 4 and parts[:2] == ["v1", "predictions"] and parts[3] == "cancel":
            prediction = self.server.predictions.get(parts[2])
            if prediction is None:
                self._send(404, {"title": "Not found", "detail": "Not found", "status": 404})
                return
            prediction.canceled = True
            self._send(200, self.server.body(prediction))
        else:
            self._send(404, {"title": "Not found", "detail": "Not found", "status": 404})

    def _create(self, model: str, version: str, body: dict[str, Any]) -> None:
        self.server.received.append({"model": model, **body})
        created = self.server.create(model, version, body.get("input") or {})
        if isinstance(created, tuple):
            status, problem, headers = created
            self._send(status, problem, headers, "application/problem+json")
            return
        wait = self.headers.get("Prefer", "")
        if wait.startswith("wait"):
            limit = float(wait.partition("=")[2] or 60)
            deadline = time.monotonic() + limit
            while created.status() in ("starting", "processing") and time.monotonic() < deadline:
                time.sleep(0.01)
        self._send(201, self.server.body(created, reading=False))

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))
        parts = self.path.strip("/").split("/")
        if parts[0] == "files":
            name = "/".join(parts[1:])
            self.server.file_requests.append(
                {"name": name, "authorization": self.headers.get("Authorization")}
            )
            data = self.server.files.get(name)
            if data is None:
                self._send(404, b"not found", content_type="text/plain")
                return
            mime = (
                "image/png"
                if name.endswith(".png")
                else "image/webp"
                if name.endswith(".webp")
                else "image/jpeg"
            )
            self._send(200, data, content_type=mime)
            return
        if not self._authorized():
            return
        if len(parts) in (3, 4) and parts[:2] == ["v1", "files"]:
            found = self.server.uploads.get(parts[2])
            if found is None or (len(parts) == 4 and parts[3] != "download"):
                self._send(404, {"title": "Not found", "detail": "Not found", "status": 404})
            elif len(parts) == 4:
                self._send(200, self.server.uploaded[parts[2]], content_type=found["content_type"])
            else:
                self._send(200, found)
            return
        if len(parts) == 3 and parts[:2] == ["v1", "predictions"]:
            if self.server._get_failures:
                status, headers = self.server._get_failures.pop(0)
                self._send(
                    status,
                    {
                        "detail": "Request was throttled. Expected available in 1 second.",
                        "status": status,
                    },
                    headers,
                )
                return
            prediction = self.server.predictions.get(parts[2])
            if prediction is None:
                self._send(404, {"title": "Not found", "detail": "Not found", "status": 404})
                return
            self._send(200, self.server.body(prediction))
        elif parts == ["v1", "account"]:
            self._send(
                200,
                {"type": "user", "username": "loopback", "name": "Loopback", "github_url": None},
            )
        elif len(parts) == 4 and parts[:2] == ["v1", "models"]:
            model = f"{parts[2]}/{parts[3]}"
            if model not in MODELS:
                self._send(404, {"title": "Not found", "detail": "Not found", "status": 404})
                return
            self._send(200, _model(model))
        elif len(parts) == 5 and parts[:2] == ["v1", "models"] and parts[4] == "versions":
            model = f"{parts[2]}/{parts[3]}"
            if model not in MODELS:
                self._send(404, {"title": "Not found", "detail": "Not found", "status": 404})
            elif model in OFFICIAL:
                # What the real API answers for an official model (replicate-javascript#258).
                detail = "This model is an official model and does not expose a list of versions."
                self._send(404, {"status": 404, "title": "Not found", "detail": detail})
            else:
                versions = [_version(VERSIONS[model][0], "2024-03-01T00:00:00Z", model)]
                versions += [
                    _version(v, "2023-07-26T00:00:00Z", model) for v in VERSIONS[model][1:]
                ]
                self._send(200, {"next": None, "previous": None, "results": versions})
        elif len(parts) == 6 and parts[:2] == ["v1", "models"] and parts[4] == "versions":
            model = f"{parts[2]}/{parts[3]}"
            if parts[5] in VERSIONS.get(model, ()):
                self._send(200, _version(parts[5], "2024-03-01T00:00:00Z", model))
                return
            self._send(
                200,
                {
                    "id": parts[5],
                    "created_at": "2023-01-01T00:00:00Z",
                    "cog_version": "0.8.6",
                    "openapi_schema": {
                        "components": {
                            "schemas": {
                                "Output": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "uri"},
                                }
                            }
                        }
                    },
                },
            )
        else:
            self._send(404, {"title": "Not found", "detail": "Not found", "status": 404})

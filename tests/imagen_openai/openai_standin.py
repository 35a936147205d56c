"""A loopback OpenAI Images API, as the real ``openai`` 3.51.0 SDK sees it (``shared/protocols.md``).

``GET /v1/models`` lists the models the key may use (``{"object": "list", "data": [{id,
object: "model", created, owned_by}]}``, text models among them, as the real API does; it
costs nothing). ``POST /v1/images/generations`` with a Bearer key answers ``{created, data: [{b64_json}],
size, quality, output_format, background, usage}``; errors are ``{"error": {message, type,
param, code}}`` with an ``x-request-id``: 401 for a bad key, 404 for an unknown model, 400
for a bad size or ``n`` (``invalid_value``) and for a prompt the safety system blocks
(``moderation_blocked``), 429 and 503 when told to.

``POST /v1/images/edits`` takes what the SDK's ``images.edit`` sends (its source,
``resources/images.py``: a ``multipart/form-data`` body, one ``image[]`` part per image,
or ``image`` for a single one, ``mask``, and the other parameters as text parts) and
refuses as the real endpoint does, with 400 ``invalid_request_error`` bodies naming the
``param``: a body that is not multipart, a missing prompt or image, an unknown field, a
retired or non-image model (``invalid_value``; an unknown name is 404
``model_not_found``), more than 16 images, an image part whose Content-Type is not
image/png, image/jpeg or image/webp (the real API goes by the part's type:
``unsupported mimetype ('application/octet-stream')`` is its answer to a part sent
without one), an image of 50,000,000 bytes or more ("less than 50MB" read strictly), a
mask that is not a PNG, of 4,000,000 bytes or more, without an alpha channel ("mask image
missing alpha channel") or of another size than the first image, and an
``input_fidelity`` the model does not take (gpt-image-1-mini: low only; gpt-image-2: none).
The messages' wording is reconstructed from the SDK's docs and reports of the real API;
the statuses, ``type`` and ``param`` are what clients rely on. The answer is a
generation's, with ``usage.input_tokens_details.image_tokens`` counted from the input
images by OpenAI's published tiling rule (plus the high-fidelity surcharge). Each edit's
fields and files (by part name, file name, type, size, SHA-256 and pixel size) are
recorded in ``edits``; the files are spooled to disk, never held whole.
"""

from __future__ import annotations

import base64
import io
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from multipart_form import FilePart, Form, FormError, read_form
from PIL import Image

from imagen.testing import LoopbackHandler, LoopbackServer

KEY = "sk-loopback-test-key-0123456789"
MODELS = (
    "gpt-image-1.5",
    "gpt-image-1-mini",
    "chatgpt-image-latest",
    "gpt-image-2",
    "gpt-image-2.5-sunburst",
    "gpt-image-2.5-flare",
)
FIXED = ("1024x1024", "1536x1024", "1024x1536", "auto")
# Output image tokens of the gpt-image-1 family (community-measured figures).
TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}


def _image(width: int, height: int, fmt: str, index: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (40 * index % 256, 120, 200)).save(out, fmt.upper())
    return out.getvalue()


class OpenAIStandIn(LoopbackServer):
    """The stand-in; the SDK's ``base_url`` is ``url + "/v1"``."""

    submission_routes = ("POST /v1/images/generations", "POST /v1/images/edits")

    def __init__(self, key: str = KEY) -> None:
        super().__init__(_Handler)
        self.key = key
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stall_s = 0.0
        self.big_b64: str | None = None
        self.revised_prompt: str | None = None
        self.with_usage = True
        self._failures: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        self._not_json = False
        self._slow: float | None = None
        self.edits: list[dict[str, Any]] = []
        """What each ``POST /v1/images/edits`` carried: fields, and files by size and hash."""
        self._spool_dir = tempfile.TemporaryDirectory(prefix="openai-standin-")
        self.spool = Path(self._spool_dir.name)

    def stop(self) -> None:
        super().stop()
        self._spool_dir.cleanup()

    @property
    def api(self) -> str:
        return f"{self.url}/v1"

    def fail_next(self, kind: str, times: int = 20) -> None:
        if kind == "transient":
            self.fail_with(503, "server_error", "The server is overloaded.", times=times)
        else:
            self.fail_with(
                400,
                "image_generation_user_error",
                "Your request was rejected by the safety system. safety_violations=[violence]",
                code="moderation_blocked",
            )

    def slow_next(self, seconds: float) -> None:
        self._slow = seconds

    def fail_with(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        error = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        self._failures += [(status, error, headers or {})] * times

    def not_json_next(self) -> None:
        self._not_json = True


class _Handler(LoopbackHandler):
    server: OpenAIStandIn

    def _send(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        request_id = {"x-request-id": f"req_{uuid.uuid4().hex[:12]}"}
        self.send(status, body, {**request_id, **(headers or {})}, content_type)

    def _error(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        self._send(
            status, {"error": {"message": message, "type": kind, "param": param, "code": code}}
        )

    def _key_refused(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.server.key}":
            return False
        self._error(
            401,
            "Incorrect API key provided: sk-wr***. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
        return True

    def do_GET(self) -> None:
        self.server.received.append({"get": self.path, "headers": dict(self.headers)})
        if self.path != "/v1/models":
            self._error(404, f"Invalid URL (GET {self.path})")
            return
        if self._key_refused():
            return
        listed = [*MODELS, "gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "whisper-1"]
        data = [
            {"id": name, "object": "model", "created": 1_700_000_000 + n, "owned_by": "system"}
            for n, name in enumerate(listed)
        ]
        self._send(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        server = self.server
        if self.path == "/v1/images/edits":
            self._edits()
            return
        body = self.read_json()
        server.received.append({"body": body, "headers": dict(self.headers)})
        if self.path != "/v1/images/generations":
            self._error(404, f"Invalid URL (POST {self.path})")
            return
        if self._key_refused():
            return
        if self._injected():
            return
        model = body.get("model")
        if model not in MODELS:
            self._error(
                404,
                f"The model '{model}' does not exist or you do not have access to it.",
                code="model_not_found",
            )
            return
        if self._bad_size_or_n(model, body) or self._blocked(body):
            return
        self._answer(body, quality=body.get("quality", "auto"), image_tokens=0)

    def _injected(self) -> bool:
        """Carry out a stall or an injected failure; True when the request was answered."""
        server = self.server
        with server.lock:
            failure = server._failures.pop(0) if server._failures else None
            not_json, server._not_json = server._not_json, False
            slow, server._slow = server._slow, None
        if (server.stall_s or slow) and not server.pause(slow or server.stall_s):
            self.close_connection = True  # stopped while holding the request: hang up
            return True
        if failure:
            status, error, headers = failure
            self._send(status, error, headers)
            return True
        if not_json:
            self._send(200, b"<html><body>Bad gateway</body></html>", content_type="text/html")
            return True
        return False

    def _bad_size_or_n(self, model: str, body: dict[str, Any]) -> bool:
        size = body.get("size", "auto")
        if model.startswith("gpt-image-2"):
            w, _, h = size.partition("x")
            valid = size == "auto" or (
                w.isdigit() and h.isdigit() and int(w) % 16 == 0 and int(h) % 16 == 0
            )
        else:
            valid = size in FIXED
        if not valid:
            self._error(
                400,
                f"Invalid value: '{size}'. Supported values are: 'auto', '1024x1024', "
                "'1024x1536', and '1536x1024'.",
                param="size",
                code="invalid_value",
            )
            return True
        n = body.get("n", 1)
        if not 1 <= n <= 10:
            self._error(
                400,
                f"Invalid 'n': integer above maximum value. Expected a value <= 10, "
                f"but got {n} instead.",
                param="n",
                code="integer_above_max_value",
            )
            return True
        return False

    def _blocked(self, body: dict[str, Any]) -> bool:
        if "forbidden" in body.get("prompt", ""):
            self._error(
                400,
                "Your request was rejected by the safety system. If you believe this is "
                "an error, contact us at help.openai.com and include the request ID.",
                kind="image_generation_user_error",
                code="moderation_blocked",
            )
            return True
        return False

    def _answer(self, body: dict[str, Any], quality: str, image_tokens: int) -> None:
        """The images asked for, with the usage of a call whose inputs had ``image_tokens``."""
        server = self.server
        size = body.get("size", "auto")
        n = body.get("n", 1)
        actual = "1024x1024" if size == "auto" else size
        width, height = (int(side) for side in actual.split("x"))
        fmt = body.get("output_format", "png")
        data = []
        for index in range(n):
            item: dict[str, Any] = {
                "b64_json": server.big_b64
                or base64.b64encode(_image(width, height, fmt, index)).decode()
            }
            if server.revised_prompt:
                item["revised_prompt"] = server.revised_prompt
            data.append(item)
        answer: dict[str, Any] = {
            "created": int(time.time()),
            "data": data,
            "size": actual,
            "quality": "medium" if quality == "auto" else quality,
            "output_format": fmt,
            "background": body.get("background", "opaque"),
        }
        if server.with_usage:
            out = TOKENS.get(answer["quality"], TOKENS["medium"]).get(actual, 1056) * n
            text = max(1, len(body.get("prompt", "")) // 4)
            answer["usage"] = {
                "input_tokens": text + image_tokens,
                "input_tokens_details": {"image_tokens": image_tokens, "text_tokens": text},
                "output_tokens": out,
                "total_tokens": text + image_tokens + out,
                "output_tokens_details": {"image_tokens": out, "text_tokens": 0},
            }
        self._send(200, answer)

    # -- POST /v1/images/edits ---------------------------------------------------------------

    def _edits(self) -> None:
        """An edit: a multipart form, checked as the real endpoint checks it."""
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        content_type = self.headers.get("Content-Type", "")
        try:
            form = read_form(self.rfile, content_type, length, server.spool)
        except FormError:
            server.received.append({"edit": None, "headers": dict(self.headers)})
            self._error(
                400,
                f"Invalid Content-Type header ({content_type or 'none'}), expected "
                "multipart/form-data.",
            )
            return
        try:
            record = _edit_record(form)
            server.received.append({"edit": record, "headers": dict(self.headers)})
            server.edits.append(record)
            if self._key_refused() or self._injected():
                return
            refusal = _edit_refusal(form)
            if refusal is not None:
                status, message, param, code = refusal
                self._error(status, message, param=param, code=code)
                return
            body: dict[str, Any] = dict(form.fields)
            body["n"] = int(body.get("n", "1"))
            if self._bad_size_or_n(body["model"], body) or self._blocked(body):
                return
            fidelity = body.get("input_fidelity", "low")
            tokens = sum(_input_tokens(part, fidelity) for part in _images(form))
            self._answer(body, quality=body.get("quality", "auto"), image_tokens=tokens)
        finally:
            form.close()


def _images(form: Form) -> list[FilePart]:
    return [part for part in form.files if part.field in ("image", "image[]")]


def _edit_record(form: Form) -> dict[str, Any]:
    """What the stand-in saw of an edit: its fields, and each file by size and hash."""
    files = []
    for part in form.files:
        entry: dict[str, Any] = {
            "field": part.field,
            "filename": part.filename,
            "content_type": part.content_type,
            "size": part.size,
            "sha256": part.sha256,
        }
        try:
            with Image.open(part.path) as picture:
                entry.update(width=picture.width, height=picture.height, mode=picture.mode)
        except (OSError, ValueError):
            pass
        files.append(entry)
    return {"fields": dict(form.fields), "field_names": [n for n, _ in form.fields], "files": files}


EDIT_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "n",
        "size",
        "quality",
        "background",
        "output_format",
        "output_compression",
        "input_fidelity",
        "response_format",
        "user",
        "safety_identifier",
        "partial_images",
        "stream",
    }
)
RETIRED = ("dall-e-2", "dall-e-3", "gpt-image-1")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
MAX_IMAGE_BYTES = 50_000_000  # "less than 50MB": the stricter, decimal reading
MAX_MASK_BYTES = 4_000_000  # "less than 4MB"


def _edit_refusal(form: Form) -> tuple[int, str, str | None, str | None] | None:
    """Why the real endpoint would refuse this edit: (status, message, param, code)."""
    fields = dict(form.fields)
    for name in fields:
        if name not in EDIT_FIELDS:
            return 400, f"Unrecognized request argument supplied: {name}", name, None
    if not fields.get("prompt"):
        return 400, "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter"
    if len(fields["prompt"]) > 32000:
        return 400, "Invalid 'prompt': string too long.", "prompt", "string_above_max_length"
    model = fields.get("model")
    if model in RETIRED or (model and model.startswith(("gpt-4", "text-", "whisper"))):
        supported = ", ".join(f"'{name}'" for name in MODELS)
        return (
            400,
            f"Invalid value: '{model}'. Supported values are: {supported}.",
            "model",
            "invalid_value",
        )
    if model not in MODELS:
        return (
            404,
            f"The model '{model}' does not exist or you do not have access to it.",
            None,
            "model_not_found",
        )
    for name in fields:
        if name not in ("model", "prompt") and name in {p.field for p in form.files}:
            return 400, f"Duplicate parameter: '{name}'.", name, None
    unknown = [p.field for p in form.files if p.field not in ("image", "image[]", "mask")]
    if unknown:
        return 400, f"Unrecognized file parameter supplied: {unknown[0]}", unknown[0], None
    images = _images(form)
    if not images:
        return 400, "Missing required parameter: 'image'.", "image", "missing_required_parameter"
    if len(images) > 16:
        return (
            400,
            (
                f"Invalid 'image': array too long. Expected an array with maximum length 16, "
                f"but got an array with length {len(images)} instead."
            ),
            "image",
            "array_above_max_length",
        )
    for index, part in enumerate(images):
        if part.content_type not in IMAGE_TYPES:
            return (
                400,
                (
                    f"Invalid file 'image': unsupported mimetype ('{part.content_type}'). "
                    "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'."
                ),
                "image",
                "unsupported_file_mimetype",
            )
        if part.size >= MAX_IMAGE_BYTES:
            return (
                400,
                (
                    f"Invalid file 'image': file too large ({part.size} bytes). Images must be "
                    "less than 50MB."
                ),
                "image",
                "file_too_large",
            )
        if _dimensions(part) is None:
            return (
                400,
                (
                    f"Invalid image file or mode for image {index + 1}, please check your image "
                    "file."
                ),
                "image",
                "invalid_image_file",
            )
    masks = [part for part in form.files if part.field == "mask"]
    if len(masks) > 1:
        return 400, "Duplicate parameter: 'mask'.", "mask", None
    if masks:
        mask = masks[0]
        size = _dimensions(mask)
        if mask.content_type != "image/png" or size is None or size[2] != "PNG":
            return (
                400,
                (
                    f"Invalid file 'mask': unsupported mimetype ('{mask.content_type}'). "
                    "Supported file formats are 'image/png'."
                ),
                "mask",
                "unsupported_file_mimetype",
            )
        if mask.size >= MAX_MASK_BYTES:
            return 400, "Invalid file 'mask': the mask must be less than 4MB.", "mask", None
        if not size[3]:
            return (
                400,
                "Invalid mask image format - mask image missing alpha channel",
                "mask",
                "invalid_image_format",
            )
        first = _dimensions(images[0])
        assert first is not None
        if size[:2] != first[:2]:
            return (
                400,
                (
                    "Invalid mask image: the mask must have the same dimensions as the image "
                    f"({first[0]}x{first[1]}), not {size[0]}x{size[1]}."
                ),
                "mask",
                "invalid_image_format",
            )
    fidelity = fields.get("input_fidelity")
    if fidelity is not None:
        if fidelity not in ("high", "low"):
            return (
                400,
                f"Invalid value: '{fidelity}'. Supported values are: 'high' and 'low'.",
                "input_fidelity",
                "invalid_value",
            )
        if model.startswith("gpt-image-2") or (model == "gpt-image-1-mini" and fidelity != "low"):
            return (
                400,
                f"input_fidelity={fidelity} is not supported for model '{model}'.",
                "input_fidelity",
                "unsupported_value",
            )
    if fields.get("n", "1").strip("-").isdigit() is False:
        return 400, f"Invalid 'n': expected an integer, got '{fields['n']}'.", "n", "invalid_type"
    return None


def _dimensions(part: FilePart) -> tuple[int, int, str, bool] | None:
    """Width, height, format and whether it has an alpha channel; None if not an image."""
    try:
        with Image.open(part.path) as picture:
            picture.verify()
        with Image.open(part.path) as picture:
            alpha = "A" in picture.getbands() or "transparency" in picture.info
            return picture.width, picture.height, picture.format or "", alpha
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def _input_tokens(part: FilePart, fidelity: str) -> int:
    """Input image tokens, by the vision tiling rule, plus the high-fidelity surcharge.

    The rule (fit in 2048×2048, shortest side to 768, 170 per 512-pixel tile plus 85) is
    OpenAI's published one for image inputs; the high-fidelity surcharge (4160 square, 6240
    otherwise) is the documented figure for gpt-image-1. Close enough to price with.
    """
    size = _dimensions(part)
    width, height = (size[0], size[1]) if size else (1024, 1024)
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    tiles = -(-int(width) // 512) * -(-int(height) // 512)
    tokens = 85 + 170 * tiles
    if fidelity == "high":
        tokens += 4160 if width == height else 6240
    return tokens

"""A loopback OpenAI Images API, as the real ``openai`` 3.51.0 SDK sees it (``shared/protocols.md``).

``GET /v1/models`` lists the models the key may use (``{"object": "list", "data": [{id,
object: "model", created, owned_by}]}``, text models among them, as the real API does; it
costs nothing). ``POST /v1/images/generations`` with a Bearer key answers ``{created, data: [{b64_json}],
size, quality, output_format, background, usage}``; errors are ``{"error": {message, type,
param, code}}`` with an ``x-request-id``: 401 for a bad key, 404 for an unknown model, 400
for a bad size or ``n`` (``invalid_value``) and for a prompt the safety system blocks
(``moderation_blocked``), 429 and 503 when told to.
"""

from __future__ import annotations

import base64
import io
import threading
import time
import uuid
from typing import Any

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

    submission_routes = ("POST /v1/images/generations",)

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
        body = self.read_json()
        server.received.append({"body": body, "headers": dict(self.headers)})
        if self.path != "/v1/images/generations":
            self._error(404, f"Invalid URL (POST {self.path})")
            return
        if self.headers.get("Authorization") != f"Bearer {server.key}":
            self._error(
                401,
                "Incorrect API key provided: sk-wr***. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
            return
        with server.lock:
            failure = server._failures.pop(0) if server._failures else None
            not_json, server._not_json = server._not_json, False
            slow, server._slow = server._slow, None
        if (server.stall_s or slow) and not server.pause(slow or server.stall_s):
            self.close_connection = True  # stopped while holding the request: hang up
            return
        if failure:
            status, error, headers = failure
            self._send(status, error, headers)
            return
        if not_json:
            self._send(200, b"<html><body>Bad gateway</body></html>", content_type="text/html")
            return
        model = body.get("model")
        if model not in MODELS:
            self._error(
                404,
                f"The model '{model}' does not exist or you do not have access to it.",
                code="model_not_found",
            )
            return
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
            return
        n = body.get("n", 1)
        if not 1 <= n <= 10:
            self._error(
                400,
                f"Invalid 'n': integer above maximum value. Expected a value <= 10, "
                f"but got {n} instead.",
                param="n",
                code="integer_above_max_value",
            )
            return
        if "forbidden" in body.get("prompt", ""):
            self._error(
                400,
                "Your request was rejected by the safety system. If you believe this is "
                "an error, contact us at help.openai.com and include the request ID.",
                kind="image_generation_user_error",
                code="moderation_blocked",
            )
            return
        actual = "1024x1024" if size == "auto" else size
        width, height = (int(side) for side in actual.split("x"))
        fmt = body.get("output_format", "png")
        quality = body.get("quality", "auto")
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
                "input_tokens": text,
                "input_tokens_details": {"image_tokens": 0, "text_tokens": text},
                "output_tokens": out,
                "total_tokens": text + out,
                "output_tokens_details": {"image_tokens": out, "text_tokens": 0},
            }
        self._send(200, answer)

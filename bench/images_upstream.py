"""A fast OpenAI-compatible images upstream, for bench/serve.py to put both proxies in front of.

    python bench/images_upstream.py PORT

``POST /v1/images/generations`` answers at once, as OpenAI's Images API answers (``created``,
``data`` with one ``b64_json`` per image, ``size``, ``quality``, ``output_format``,
``usage``), with the same small PNG every time: what is measured is the proxy in front,
not the upstream. Its own process, so the benchmark's client never competes with it for a
GIL.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image


def _png() -> str:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (40, 120, 200)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


IMAGE = _png()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK hold the body back ~40 ms, which would swamp both proxies.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._send(200 if self.path == "/health" else 404, {})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path.rstrip("/") != "/v1/images/generations":
            self._send(404, {"error": {"message": f"Invalid URL (POST {self.path})"}})
            return
        n = int(body.get("n") or 1)
        self._send(
            200,
            {
                "created": int(time.time()),
                "data": [{"b64_json": IMAGE} for _ in range(n)],
                "size": body.get("size", "1024x1024"),
                "quality": "medium",
                "output_format": "png",
                "background": "opaque",
                "usage": {
                    "input_tokens": 8,
                    "input_tokens_details": {"image_tokens": 0, "text_tokens": 8},
                    "output_tokens": 1056 * n,
                    "total_tokens": 8 + 1056 * n,
                },
            },
        )

    def _send(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

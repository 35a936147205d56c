"""A loopback Supabase: Storage objects and the PostgREST insert, as protocols.md records them.

What the real servers do that matters to imagen, and that this stand-in does too:

- Storage answers nearly every error with HTTP 400 and the real status, as a string, in the
  body's ``statusCode`` (``{"statusCode","error","message","code"}``).
- ``POST /storage/v1/object/{bucket}/{path}`` takes multipart (``cacheControl``, optional
  ``metadata``, the ``file`` part with its own Content-Type) and refuses an existing key
  unless ``x-upsert: true``; it answers ``{"Key": "bucket/path", "Id": uuid}``.
- ``POST /storage/v1/object/sign/{bucket}/{path}`` takes ``{"expiresIn": "<seconds>"}`` and
  answers a ``signedURL`` relative to ``/storage/v1`` with a leading ``/``; the signed URL
  is served without credentials.
- ``POST /rest/v1/{table}`` reads the schema from ``Content-Profile`` (406 PGRST106 when it
  is not exposed, 404 PGRST205 for a missing table), honours ``Prefer: return=...`` and
  answers 201 with a JSON array; errors are ``{"code","details","hint","message"}``.
- Every request carries ``apiKey`` and ``Authorization: Bearer <key>``.

Controls for tests: :attr:`outage` (every request answers 503 with an HTML body, as a proxy
in front of a down project does), :attr:`fail_uploads` (the next uploads answer 502),
:meth:`put_object`.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from imagen.testing import LoopbackHandler, LoopbackServer

IMAGES_REQUIRED = ("owner", "prompt", "backend", "mime_type")


class SupabaseStandIn(LoopbackServer):
    """Storage buckets and an ``imagen.images`` table behind one URL."""

    def __init__(self, key: str, buckets: tuple[str, ...] = ("images",)) -> None:
        super().__init__(_Handler)
        self.key = key
        self.buckets = set(buckets)
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.rows: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Any]] = []
        self.outage = False
        self.fail_uploads = 0  # the next uploads answer a gateway 502
        self.lock = threading.Lock()

    def put_object(self, bucket: str, path: str, data: bytes, mime_type: str) -> None:
        self.objects[(bucket, path)] = (data, mime_type)


def _multipart(body: bytes, content_type: str) -> dict[str, tuple[dict[str, str], bytes]]:
    """The parts of a multipart/form-data body, by name: (headers, content)."""
    boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
    parts = {}
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name = disposition.split('name="', 1)[1].split('"', 1)[0]
        parts[name] = (headers, content)
    return parts


class _Handler(LoopbackHandler):
    server: SupabaseStandIn

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _storage_error(self, status: str, error: str, message: str, code: str) -> None:
        body = {"statusCode": status, "error": error, "message": message, "code": code}
        self.send(400, body)

    def _authorized(self) -> bool:
        if self.server.outage:
            self.send(
                503, b"<html><body>503 Service Unavailable</body></html>", content_type="text/html"
            )
            return False
        if self.headers.get("Authorization") != f"Bearer {self.server.key}":
            if self.path.startswith("/rest/"):
                self.send(401, {"code": "PGRST301", "details": None, "hint": None,
                                "message": "JWSError JWSInvalidSignature"})  # fmt: skip
            else:
                self._storage_error(
                    "403", "Unauthorized", "signature verification failed", "AccessDenied"
                )
            return False
        return True

    def _object_target(self, prefix: str) -> tuple[str, str] | None:
        rest = unquote(urlsplit(self.path).path)[len(prefix) :]
        bucket, _, path = rest.partition("/")
        if bucket not in self.server.buckets:
            self._storage_error("404", "Bucket not found", "Bucket not found", "NoSuchBucket")
            return None
        return bucket, path

    def do_POST(self) -> None:
        body = self._body()
        path = urlsplit(self.path).path
        if not self._authorized():
            return
        if path.startswith("/storage/v1/object/sign/"):
            self._sign(body)
        elif path.startswith("/storage/v1/object/"):
            self._upload(body)
        elif path.startswith("/rest/v1/"):
            self._insert(path.removeprefix("/rest/v1/"), body)
        else:
            self.send(404, {"message": "not found"})

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/storage/v1/object/sign/"):  # no credentials: the token is the key
            target = self._object_target("/storage/v1/object/sign/")
            token = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
            if target is not None and token == f"signed:{target[0]}/{target[1]}":
                self._serve_object(target)
            elif target is not None:
                self._storage_error("400", "InvalidJWT", "Invalid Compact JWS", "InvalidJWT")
            return
        if not self._authorized():
            return
        target = self._object_target("/storage/v1/object/")
        if target is not None:
            self._serve_object(target)

    def _serve_object(self, target: tuple[str, str]) -> None:
        stored = self.server.objects.get(target)
        if stored is None:
            self._storage_error("404", "not_found", "Object not found", "NoSuchKey")
            return
        self.send(200, stored[0], content_type=stored[1])

    def _upload(self, body: bytes) -> None:
        target = self._object_target("/storage/v1/object/")
        if target is None:
            return
        with self.server.lock:
            failing, self.server.fail_uploads = (
                self.server.fail_uploads > 0,
                max(0, self.server.fail_uploads - 1),
            )
        if failing:
            self.send(502, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html")
            return
        parts = _multipart(body, self.headers.get("Content-Type", ""))
        headers, data = parts["file"]
        mime_type = headers.get("content-type", "text/plain;charset=UTF-8")
        with self.server.lock:
            self.server.uploads.append(
                {"target": target, "mime_type": mime_type, "size": len(data),
                 "cache_control": parts["cacheControl"][1].decode(),
                 "upsert": self.headers.get("x-upsert")}
            )  # fmt: skip
            if target in self.server.objects and self.headers.get("x-upsert") != "true":
                self._storage_error(
                    "409", "Duplicate", "The resource already exists", "KeyAlreadyExists"
                )
                return
            self.server.objects[target] = (data, mime_type)
        self.send(200, {"Key": f"{target[0]}/{target[1]}", "Id": str(uuid.uuid4())})

    def _sign(self, body: bytes) -> None:
        target = self._object_target("/storage/v1/object/sign/")
        if target is None:
            return
        request = json.loads(body or b"{}")
        if not isinstance(request.get("expiresIn"), str):
            self._storage_error("400", "Error", "body/expiresIn must be string", "InvalidRequest")
            return
        if target not in self.server.objects:
            self._storage_error("404", "not_found", "Object not found", "NoSuchKey")
            return
        token = f"signed:{target[0]}/{target[1]}"
        self.send(200, {"signedURL": f"/object/sign/{target[0]}/{target[1]}?token={token}"})

    def _insert(self, table: str, body: bytes) -> None:
        def error(status: int, code: str, message: str, details: str | None = None) -> None:
            self.send(status, {"code": code, "details": details, "hint": None, "message": message})

        schema = self.headers.get("Content-Profile", "public")
        if schema not in ("public", "imagen"):
            error(406, "PGRST106", "The schema must be one of the following: public, imagen")
            return
        if (schema, table) != ("imagen", "images"):
            error(
                404, "PGRST205", f"Could not find the table '{schema}.{table}' in the schema cache"
            )
            return
        row = json.loads(body)
        for column in IMAGES_REQUIRED:
            if row.get(column) is None:
                error(400, "23502", f'null value in column "{column}" of relation "images" '
                      "violates not-null constraint", "Failing row contains (...).")  # fmt: skip
                return
        with self.server.lock:
            stored = {"id": len(self.server.rows) + 1, **row}
            self.server.rows.append(stored)
        minimal = "return=minimal" in self.headers.get("Prefer", "")
        self.send(201, b"" if minimal else [stored])

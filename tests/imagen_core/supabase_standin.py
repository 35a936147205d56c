"""A loopback Supabase gateway: Storage answered per role, ``/rest/v1`` passed to real PostgREST.

Storage keeps object bytes in memory and object rows in the project database's real
``storage.objects`` table, read and written under the caller's role with the caller's claims,
as the real Storage API does: so the policies on ``storage.objects`` (imagen's migration
creates one) decide who may read what, exactly as on a project. What it does as
protocols.md records the real servers:

- Every request needs ``apikey`` (the project's anon or service key, as Supabase's gateway
  checks) and ``Authorization: Bearer <HS256 JWT>`` signed with the project's secret. A
  token that is not a JWT, a wrong signature and an expired token get the real four-key
  bodies (``"Invalid Compact JWS"``, ``"signature verification failed"``, ``"exp" claim
  timestamp check failed``); no Authorization header gets ``InvalidRequest``.
- Nearly every Storage error is HTTP 400 with the real status, as a string, in the body's
  ``statusCode`` (``{"statusCode","error","message","code"}``).
- ``POST /storage/v1/object/{bucket}/{path}`` takes multipart (``cacheControl``, optional
  ``metadata``, the ``file`` part with its own Content-Type), enforces the bucket's
  ``file_size_limit`` (413) and ``allowed_mime_types`` (415), inserts the object's row as
  the caller (anon: "new row violates row-level security policy"), refuses an existing key
  unless ``x-upsert: true`` (409 Duplicate), and answers ``{"Key": "bucket/path", "Id"}``.
- ``GET /storage/v1/object/{bucket}/{path}`` and ``POST /storage/v1/object/sign/...`` find
  the object as the caller: one the policies hide is "Object not found", as a missing one.
  Signed URLs carry a real HS256 token (``{"url", "iat", "exp"}``) and are served without
  credentials; public URLs only for public buckets.
- ``/rest/v1/...`` goes to the real PostgREST, headers and body as they came.

Controls for tests: :attr:`outage` (every request answers 503 with an HTML body, as a proxy
in front of a down project does), :attr:`fail_uploads` (the next uploads answer 502),
:meth:`put_object`, :meth:`set_bucket`; :attr:`objects` and :attr:`uploads` to look at.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import jwt
import psycopg
from psycopg import errors

from imagen.testing import LoopbackHandler, LoopbackServer

_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}


class StorageError(Exception):
    """A Storage API error: HTTP 400 with the real status in the body, as a string."""

    def __init__(self, status: str, error: str, message: str, code: str) -> None:
        super().__init__(message)
        self.body = {"statusCode": status, "error": error, "message": message, "code": code}


def _access_denied(message: str) -> StorageError:
    return StorageError("403", "Unauthorized", message, "AccessDenied")


_NOT_FOUND = ("404", "not_found", "Object not found", "NoSuchKey")
_NO_BUCKET = ("404", "Bucket not found", "Bucket not found", "NoSuchBucket")


class SupabaseStandIn(LoopbackServer):
    """Storage over the project's database, and its REST API, behind one URL."""

    def __init__(self, secret: str, db_url: str, rest_url: str) -> None:
        super().__init__(_Handler)
        self.secret = secret
        self.db_url = db_url
        self.rest_url = rest_url
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.uploads: list[dict[str, Any]] = []
        self.outage = False
        self.fail_uploads = 0  # the next uploads answer a gateway 502
        self.lock = threading.Lock()
        self.rest = httpx.Client(timeout=60)

    def server_close(self) -> None:
        super().server_close()
        self.rest.close()

    # -- test controls ------------------------------------------------------------------

    def put_object(self, bucket: str, path: str, data: bytes, mime_type: str) -> None:
        """Store an object as the service would, bypassing every policy."""
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO storage.objects (bucket_id, name, metadata) VALUES (%s, %s, %s)",
                (bucket, path, json.dumps({"mimetype": mime_type, "size": len(data)})),
            )
        with self.lock:
            self.objects[(bucket, path)] = (data, mime_type)

    def set_bucket(
        self,
        bucket: str,
        *,
        public: bool = False,
        file_size_limit: int | None = None,
        allowed_mime_types: list[str] | None = None,
    ) -> None:
        """Create or change a bucket, as the dashboard does."""
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO storage.buckets (id, name, public, file_size_limit, allowed_mime_types)"
                " VALUES (%(id)s, %(id)s, %(public)s, %(limit)s, %(types)s)"
                " ON CONFLICT (id) DO UPDATE SET public = EXCLUDED.public,"
                " file_size_limit = EXCLUDED.file_size_limit,"
                " allowed_mime_types = EXCLUDED.allowed_mime_types",
                {"id": bucket, "public": public, "limit": file_size_limit,
                 "types": allowed_mime_types},
            )  # fmt: skip

    def drop_buckets(self) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute("DELETE FROM storage.objects")
            conn.execute("DELETE FROM storage.buckets")
        with self.lock:
            self.objects.clear()


def _multipart(body: bytes, content_type: str) -> dict[str, tuple[dict[str, str], bytes]]:
    """The parts of a multipart/form-data body, by name: (headers, content)."""
    boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
    parts = {}
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name = disposition.split('name="', 1)[1].split('"', 1)[0]
        parts[name] = (headers, content.removesuffix(b"\r\n"))
    return parts


def _mime_allowed(mime_type: str, allowed: list[str] | None) -> bool:
    if not allowed:
        return True
    for pattern in allowed:
        if pattern == mime_type or (pattern.endswith("/*") and mime_type.startswith(pattern[:-1])):
            return True
    return False


class _Handler(LoopbackHandler):
    server: SupabaseStandIn

    # -- plumbing -----------------------------------------------------------------------

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _fail(self, error: StorageError) -> None:
        self.send(400, error.body)

    def _gateway_down(self) -> bool:
        if self.server.outage:
            self.send(
                503, b"<html><body>503 Service Unavailable</body></html>", content_type="text/html"
            )
            return True
        return False

    def _decode(self, text: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                text, self.server.secret, algorithms=["HS256"], options={"verify_aud": False}
            )
        except jwt.ExpiredSignatureError:
            raise _access_denied('"exp" claim timestamp check failed') from None
        except jwt.InvalidSignatureError:
            raise _access_denied("signature verification failed") from None
        except jwt.PyJWTError:
            raise _access_denied("Invalid Compact JWS") from None

    def _claims(self) -> dict[str, Any]:
        """The caller's verified claims; StorageError as the real server words it."""
        header = self.headers.get("authorization")
        if header is None:
            raise StorageError(
                "400", "Error", "headers must have required property 'authorization'",
                "InvalidRequest",
            )  # fmt: skip
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            raise _access_denied("Invalid Compact JWS")
        claims = self._decode(credentials.strip())
        if not isinstance(claims.get("role"), str):
            raise _access_denied("Invalid Compact JWS")
        return claims

    def _gateway_key(self) -> bool:
        """Supabase's gateway wants the project's anon or service key in ``apikey``."""
        key = self.headers.get("apikey")
        if key is None:
            self.send(401, {"message": "No API key found in request",
                            "hint": "No `apikey` request header or url param was found."})  # fmt: skip
            return False
        try:
            role = jwt.decode(key, self.server.secret, algorithms=["HS256"]).get("role")
        except jwt.PyJWTError:
            role = None
        if role not in ("anon", "service_role"):
            self.send(401, {"message": "Invalid API key",
                            "hint": "Double check your Supabase `anon` or `service_role` API key."})  # fmt: skip
            return False
        return True

    def _as_caller(self, claims: dict[str, Any]) -> psycopg.Connection:
        """A transaction acting as the caller: its role, its claims, as Storage sets them."""
        conn = psycopg.connect(self.server.db_url)
        try:
            conn.execute(
                "SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                (claims["role"], json.dumps(claims)),
            )
        except psycopg.Error as exc:
            conn.close()
            raise _access_denied(str(exc).splitlines()[0]) from None
        return conn

    def _bucket(self, bucket: str) -> dict[str, Any]:
        """The bucket's settings, read with the service's own rights as Storage does."""
        with psycopg.connect(self.server.db_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT public, file_size_limit, allowed_mime_types FROM storage.buckets"
                " WHERE id = %s",
                (bucket,),
            ).fetchone()
        if row is None:
            raise StorageError(*_NO_BUCKET)
        return {"public": row[0], "file_size_limit": row[1], "allowed_mime_types": row[2]}

    def _target(self, prefix: str) -> tuple[str, str]:
        rest = unquote(urlsplit(self.path).path)[len(prefix) :]
        bucket, _, path = rest.partition("/")
        return bucket, path

    def _visible(self, claims: dict[str, Any], bucket: str, path: str) -> bool:
        with self._as_caller(claims) as conn:
            row = conn.execute(
                "SELECT 1 FROM storage.objects WHERE bucket_id = %s AND name = %s", (bucket, path)
            ).fetchone()
        return row is not None

    # -- routes -------------------------------------------------------------------------

    def do_POST(self) -> None:
        self._route("POST")

    def do_GET(self) -> None:
        self._route("GET")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PUT(self) -> None:
        self._route("PUT")

    def _route(self, method: str) -> None:
        body = self._body()
        path = urlsplit(self.path).path
        if self._gateway_down():
            return
        try:
            if path.startswith("/storage/v1/object/sign/") and method == "GET":
                self._serve_signed()  # no credentials: the token is the key
            elif path.startswith("/storage/v1/object/public/") and method == "GET":
                self._serve_public()
            elif not self._gateway_key():
                return
            elif path.startswith("/rest/v1/"):
                self._proxy(method, body)
            elif path.startswith("/storage/v1/object/sign/") and method == "POST":
                self._sign(self._claims(), body)
            elif path.startswith("/storage/v1/object/") and method in ("POST", "PUT"):
                self._upload(self._claims(), body, method)
            elif path.startswith("/storage/v1/object/") and method == "GET":
                self._download(self._claims())
            else:
                self.send(404, {"message": "no Route matched with those values"})
        except StorageError as error:
            self._fail(error)

    def _proxy(self, method: str, body: bytes) -> None:
        url = self.server.rest_url + self.path.removeprefix("/rest/v1")
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS]
        answer = self.server.rest.request(method, url, headers=headers, content=body)
        passed = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() not in (*_HOP_HEADERS, "content-type", "content-encoding")
        }
        self.send(
            answer.status_code,
            answer.content,
            headers=passed,
            content_type=answer.headers.get("content-type", "application/json"),
        )

    def _upload(self, claims: dict[str, Any], body: bytes, method: str) -> None:
        bucket, path = self._target("/storage/v1/object/")
        settings = self._bucket(bucket)
        with self.server.lock:
            failing = self.server.fail_uploads > 0
            self.server.fail_uploads = max(0, self.server.fail_uploads - 1)
        if failing:
            self.send(502, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html")
            return
        parts = _multipart(body, self.headers.get("Content-Type", ""))
        headers, data = parts["file"]
        mime_type = headers.get("content-type", "text/plain;charset=UTF-8")
        upsert = method == "PUT" or self.headers.get("x-upsert") == "true"
        with self.server.lock:
            self.server.uploads.append(
                {"target": (bucket, path), "mime_type": mime_type, "size": len(data),
                 "cache_control": parts["cacheControl"][1].decode(), "role": claims["role"],
                 "upsert": self.headers.get("x-upsert")}
            )  # fmt: skip
        bare_type = mime_type.split(";", 1)[0].strip()
        if not _mime_allowed(bare_type, settings["allowed_mime_types"]):
            raise StorageError(
                "415", "invalid_mime_type", f"mime type {bare_type} is not supported",
                "InvalidMimeType",
            )  # fmt: skip
        limit = settings["file_size_limit"]
        if limit is not None and len(data) > limit:
            raise StorageError(
                "413", "Payload too large", "The object exceeded the maximum allowed size",
                "EntityTooLarge",
            )  # fmt: skip
        owner = claims.get("sub") if _is_uuid(claims.get("sub")) else None
        metadata = json.dumps({"mimetype": mime_type, "size": len(data),
                               "cacheControl": f"max-age={parts['cacheControl'][1].decode()}"})  # fmt: skip
        insert = (
            "INSERT INTO storage.objects (bucket_id, name, owner, metadata) VALUES (%s, %s, %s, %s)"
        )
        if upsert:
            insert += (
                " ON CONFLICT (bucket_id, name) DO UPDATE"
                " SET metadata = EXCLUDED.metadata, updated_at = now()"
            )
        with self._as_caller(claims) as conn:
            try:
                row = conn.execute(insert + " RETURNING id", (bucket, path, owner, metadata))
                object_id = row.fetchone()[0]
            except errors.UniqueViolation:
                raise StorageError(
                    "409", "Duplicate", "The resource already exists", "KeyAlreadyExists"
                ) from None
            except errors.InsufficientPrivilege as exc:
                message = str(exc).splitlines()[0]
                if "row-level security" in message:
                    message = "new row violates row-level security policy"
                raise _access_denied(message) from None
            with self.server.lock:
                self.server.objects[(bucket, path)] = (data, mime_type)
        self.send(200, {"Key": f"{bucket}/{path}", "Id": str(object_id)})

    def _download(self, claims: dict[str, Any]) -> None:
        prefix = "/storage/v1/object/"
        if urlsplit(self.path).path.startswith(prefix + "authenticated/"):
            prefix += "authenticated/"
        bucket, path = self._target(prefix)
        self._bucket(bucket)
        if not self._visible(claims, bucket, path):
            raise StorageError(*_NOT_FOUND)
        self._serve_bytes(bucket, path)

    def _serve_bytes(self, bucket: str, path: str) -> None:
        with self.server.lock:
            stored = self.server.objects.get((bucket, path))
        if stored is None:
            raise StorageError(*_NOT_FOUND)
        self.send(200, stored[0], content_type=stored[1])

    def _sign(self, claims: dict[str, Any], body: bytes) -> None:
        bucket, path = self._target("/storage/v1/object/sign/")
        request = json.loads(body or b"{}")
        if not isinstance(request.get("expiresIn"), str | int):
            raise StorageError(
                "400", "Error", "body must have required property 'expiresIn'", "InvalidRequest"
            )
        self._bucket(bucket)
        if not self._visible(claims, bucket, path):
            raise StorageError(*_NOT_FOUND)
        now = int(time.time())
        signed = jwt.encode(
            {"url": f"{bucket}/{path}", "iat": now, "exp": now + int(request["expiresIn"])},
            self.server.secret,
            algorithm="HS256",
        )
        self.send(200, {"signedURL": f"/object/sign/{bucket}/{path}?token={signed}"})

    def _serve_signed(self) -> None:
        bucket, path = self._target("/storage/v1/object/sign/")
        text = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        try:
            claims = jwt.decode(text, self.server.secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError:
            raise StorageError(
                "400", "InvalidJWT", '"exp" claim timestamp check failed', "InvalidJWT"
            ) from None
        except jwt.PyJWTError:
            raise StorageError("400", "InvalidJWT", "Invalid Compact JWS", "InvalidJWT") from None
        if claims.get("url") != f"{bucket}/{path}":
            raise StorageError(
                "400", "InvalidSignature", "The url do not match the signature", "InvalidSignature"
            )
        self._serve_bytes(bucket, path)

    def _serve_public(self) -> None:
        bucket, path = self._target("/storage/v1/object/public/")
        try:
            public = self._bucket(bucket)["public"]
        except StorageError:
            public = False
        if not public:
            raise StorageError(*_NO_BUCKET)
        self._serve_bytes(bucket, path)


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True

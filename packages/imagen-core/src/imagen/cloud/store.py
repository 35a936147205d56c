"""Talking to Supabase: Storage uploads and the ``imagen.images`` insert, through supabase-py."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from imagen.cloud.errors import CloudError
from imagen.cloud.settings import CloudSettings

__all__ = ["CloudError", "CloudRecord", "CloudStore"]


@dataclass(frozen=True)
class CloudRecord:
    """Where an image went: the sidecar's ``cloud`` field."""

    bucket: str
    path: str
    url: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "path": self.path, "url": self.url}


class CloudStore:
    """One Supabase project's Storage bucket and REST API."""

    def __init__(self, settings: CloudSettings) -> None:
        import supabase  # ~0.3 s: only when a sync runs
        from supabase.lib.client_options import SyncClientOptions

        self.settings = settings
        # Our own httpx client: timeouts we choose, and none of the DeprecationWarnings
        # supabase-py emits when it builds its own.
        self._http = httpx.Client(timeout=settings.timeout_s, follow_redirects=True)
        options = SyncClientOptions(schema="imagen", httpx_client=self._http)
        self._client = supabase.create_client(settings.url + "/", settings.key, options)
        self._bucket = self._client.storage.from_(settings.bucket)

    def close(self) -> None:
        self._http.close()

    def upload(self, local: Path, object_path: str, mime_type: str) -> tuple[CloudRecord, bool]:
        """Upload ``local`` to ``object_path``, streamed, never overwriting.

        Returns where it went, and whether this call stored it: an object already at the
        path that holds the same bytes counts as this upload (a retried or concurrent sync
        is harmless), and comes back with False; different bytes there are an error.
        """
        from storage3.exceptions import StorageApiError

        stored = True
        try:
            with local.open("rb") as stream:
                self._bucket.upload(
                    object_path, stream, {"content-type": mime_type, "upsert": "false"}
                )
        except StorageApiError as exc:
            if str(exc.status) != "409":
                raise self._storage_error(exc, object_path) from exc
            self._check_same(local, object_path)
            stored = False
        except (httpx.HTTPError, OSError) as exc:
            raise self._transport_error(exc, f"uploading {object_path}") from exc
        return CloudRecord(self.settings.bucket, object_path, self._url(object_path)), stored

    def download(self, object_path: str, destination: Path, max_bytes: int | None = None) -> int:
        """Stream the object at ``object_path`` into the file ``destination``; its size.

        With the project's key, through Storage's authenticated download route. A missing
        object, or one over ``max_bytes``, is a permanent CloudError (the file is removed).
        """
        from urllib.parse import quote

        url = (
            f"{self.settings.url}/storage/v1/object/authenticated/"
            f"{quote(self.settings.bucket, safe='')}/{quote(object_path)}"
        )
        headers = {"Authorization": f"Bearer {self.settings.key}", "apikey": self.settings.key}
        where = f"{self.settings.bucket}/{object_path}"
        written = 0
        try:
            with self._http.stream("GET", url, headers=headers) as answer:
                if answer.status_code != 200:
                    answer.read()
                    raise _download_error(answer, where)
                with destination.open("wb") as out:
                    for chunk in answer.iter_bytes(1 << 20):
                        written += len(chunk)
                        if max_bytes is not None and written > max_bytes:
                            raise CloudError(
                                f"{where} is more than the {max_bytes} bytes allowed",
                                transient=False,
                            )
                        out.write(chunk)
        except httpx.HTTPError as exc:
            destination.unlink(missing_ok=True)
            raise self._transport_error(exc, f"downloading {object_path}") from exc
        except BaseException:
            destination.unlink(missing_ok=True)
            raise
        return written

    def _check_same(self, local: Path, object_path: str) -> None:
        from storage3.exceptions import StorageApiError

        try:
            existing = self._bucket.download(object_path)
        except StorageApiError as exc:
            raise self._storage_error(exc, object_path) from exc
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, f"checking {object_path}") from exc
        if _digest_file(local) != hashlib.sha256(existing).hexdigest():
            raise CloudError(
                f"{self.settings.bucket}/{object_path} already holds a different file; "
                "not overwritten (change cloud.path so names are unique, e.g. with {time})",
                transient=False,
            )

    def _url(self, object_path: str) -> str | None:
        from storage3.exceptions import StorageApiError

        kind = self.settings.url_kind
        if kind == "public":
            return self._bucket.get_public_url(object_path)
        if kind == "none":
            return None
        try:
            signed = self._bucket.create_signed_url(object_path, self.settings.signed_url_ttl_s)
        except StorageApiError as exc:
            raise self._storage_error(exc, object_path) from exc
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, f"signing {object_path}") from exc
        return signed["signedURL"]

    def record_image(self, row: dict[str, Any]) -> bool:
        """Record an uploaded image in ``imagen.images``; False when a row already has it.

        Through ``imagen.record_synced_image`` (imagen-worker's migration 0004), which takes a
        lock on the object and adds a row only when none records it: any number of syncs of
        the same image, at once or one after another, leave one row.
        """
        from postgrest.exceptions import APIError

        try:
            answer = self._client.rpc("record_synced_image", row).execute()
        except APIError as exc:
            raise _rest_error(exc, self.settings) from exc
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "recording the image in imagen.images") from exc
        return answer.data is True

    def _storage_error(self, exc: Any, object_path: str) -> CloudError:
        status = str(exc.status)
        where = f"{self.settings.bucket}/{object_path}"
        return CloudError(
            f"Supabase Storage refused {where} ({status} {exc.code}): {exc.message}",
            transient=status.startswith("5") or status == "429",
        )

    def _transport_error(self, exc: Exception, what: str) -> CloudError:
        reason = str(exc) or type(exc).__name__
        return CloudError(
            f"{what}: cannot reach Supabase at {self.settings.url}: {reason}", transient=True
        )


# What PostgREST's error codes mean for cloud sync, and what the operator does about each.
_REMEDIES = {
    "PGRST106": "the project's REST API does not expose the imagen schema: add imagen to the "
    "exposed schemas (Supabase: Project Settings, Data API, Exposed schemas)",
    "42501": "the service key's role lacks imagen's grants: run imagen db migrate "
    "(imagen-worker), then imagen db check",
    "PGRST202": "the database has no imagen.record_synced_image: run imagen db migrate "
    "(imagen-worker)",
    "PGRST205": "the database has no imagen schema yet: run imagen db migrate (imagen-worker)",
    "42883": "the database's imagen schema is out of date: run imagen db migrate (imagen-worker)",
}


def _rest_error(exc: Any, settings: CloudSettings) -> CloudError:
    """A CloudError for a PostgREST error: what it said, and the remedy when there is one."""
    code = str(exc.code) if exc.code is not None else None
    said = exc.message or code or "no details"
    if code in ("PGRST301", "PGRST302") or (code or "").startswith("PGRST3"):
        return CloudError(
            f"recording the image in imagen.images: Supabase refused the key in "
            f"${settings.key_env} ({said})",
            transient=False,
        )
    remedy = _REMEDIES.get(code or "")
    text = f"recording the image in imagen.images failed: {said}"
    if remedy:
        text += f"; {remedy}"
    elif exc.details:
        text += f" ({exc.details})"
    transient = code is not None and (code.startswith(("5", "PGRST0")) or code == "40001")
    return CloudError(text, transient=transient)


def _download_error(answer: httpx.Response, where: str) -> CloudError:
    """Storage's answer to a download it refused, as a CloudError."""
    try:
        body = answer.json()
        said = f"{body.get('statusCode', answer.status_code)} {body.get('error', '')}: "
        said += str(body.get("message", ""))
    except (ValueError, AttributeError):
        said = f"{answer.status_code} {answer.reason_phrase}"
    status = answer.status_code
    return CloudError(
        f"Supabase Storage refused {where} ({said.strip()})",
        transient=status >= 500 or status == 429,
    )


def _digest_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

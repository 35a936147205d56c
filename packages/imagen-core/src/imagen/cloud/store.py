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

    def upload(self, local: Path, object_path: str, mime_type: str) -> CloudRecord:
        """Upload ``local`` to ``object_path``, streamed, never overwriting.

        An object already at the path that holds the same bytes counts as this upload (a
        retried sync is harmless); different bytes there are an error.
        """
        from storage3.exceptions import StorageApiError

        try:
            with local.open("rb") as stream:
                self._bucket.upload(
                    object_path, stream, {"content-type": mime_type, "upsert": "false"}
                )
        except StorageApiError as exc:
            if str(exc.status) != "409":
                raise self._storage_error(exc, object_path) from exc
            self._check_same(local, object_path)
        except (httpx.HTTPError, OSError) as exc:
            raise self._transport_error(exc, f"uploading {object_path}") from exc
        return CloudRecord(self.settings.bucket, object_path, self._url(object_path))

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

    def insert_image(self, row: dict[str, Any]) -> None:
        """Insert one ``imagen.images`` row through the REST API."""
        from postgrest.exceptions import APIError

        try:
            self._client.table("images").insert(row, returning="minimal").execute()
        except APIError as exc:
            transient = exc.code is not None and str(exc.code).startswith(("5", "PGRST0"))
            raise CloudError(
                f"recording the image in imagen.images failed: {exc.message or exc.code}"
                + (f" ({exc.details})" if exc.details else ""),
                transient=transient,
            ) from exc
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "recording the image in imagen.images") from exc

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


def _digest_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

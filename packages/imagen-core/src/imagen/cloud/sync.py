"""Syncing one saved image: its object path, the upload, its sidecar record, its images row."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from imagen.cloud.errors import CloudError
from imagen.cloud.settings import CloudSettings
from imagen.errors import ConfigError, TransientBackendError
from imagen.metadata import EXTENSIONS
from imagen.retry import call_with_retry

if TYPE_CHECKING:
    from imagen.cloud.store import CloudStore
    from imagen.output import SavedImage

__all__ = ["LOCAL_OWNER", "images_row", "object_path", "open_store", "sync_image"]

T = TypeVar("T")

LOCAL_OWNER = "local"  # {owner} and the images row's owner outside the worker


def open_store(settings: CloudSettings) -> CloudStore:
    """A client for ``settings``; a ConfigError when the ``cloud`` extra is missing."""
    try:
        from imagen.cloud.store import CloudStore
    except ImportError as exc:
        raise ConfigError(
            "the cloud: section needs supabase-py: pip install 'imagen-core[cloud]'",
            key="cloud",
        ) from exc
    return CloudStore(settings)


def object_path(settings: CloudSettings, record: dict[str, Any], path: Path, owner: str) -> str:
    """Where the image whose sidecar record is ``record`` goes in the bucket."""
    created = datetime.fromisoformat(record["created"]).astimezone()
    return str(
        settings.path.render(
            when=created,
            prompt=record.get("prompt") or "",
            seed=record.get("image_seed", record.get("seed")),
            backend=record.get("backend") or "unknown",
            ext=EXTENSIONS.get(record.get("mime_type", ""), path.suffix.lstrip(".") or "bin"),
            index=record.get("index") or 1,
            owner=owner,
        )
    )


def images_row(image: SavedImage, record: dict[str, Any], owner: str, path: str) -> dict[str, Any]:
    """The ``imagen.images`` row of a synced image, as the REST API takes it."""
    return {
        "owner": owner,
        "local_path": str(image.path),
        "storage_location": path,
        "prompt": record.get("prompt"),
        "backend": record.get("backend"),
        "seed": record.get("image_seed", record.get("seed")),
        "width": record.get("width"),
        "height": record.get("height"),
        "mime_type": image.mime_type,
        "metadata": record.get("metadata") or {},
    }


def sync_image(
    store: CloudStore, settings: CloudSettings, image: SavedImage, owner: str, *, record_row: bool
) -> None:
    """Upload ``image``, record where it went in its sidecar, and insert its images row."""
    path = object_path(settings, image.record, image.path, owner)
    cloud = _retried(
        lambda: store.upload(image.path, path, image.mime_type), f"uploading {path}", settings
    )
    if record_row and settings.record_images:
        store.insert_image(images_row(image, image.record, owner, path))
    image.update_sidecar(cloud=cloud.to_dict())


def _retried(call: Callable[[], T], what: str, settings: CloudSettings) -> T:
    """``call`` under the shared retry policy; an upload may be repeated (same bytes, same path)."""

    def attempt() -> T:
        try:
            return call()
        except CloudError as exc:
            if exc.transient:
                raise TransientBackendError(exc.message) from exc
            raise

    try:
        return call_with_retry(attempt, what=what, policy=settings.retry, safe_to_repeat=True)
    except TransientBackendError as exc:
        raise CloudError(exc.message, transient=True) from exc

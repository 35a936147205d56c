"""Syncing one saved image: its object path, the upload, its sidecar record, its images row."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from imagen.cloud.errors import CloudError
from imagen.cloud.settings import CloudSettings
from imagen.errors import ConfigError, TransientBackendError
from imagen.metadata import EXTENSIONS
from imagen.retry import call_with_retry

if TYPE_CHECKING:
    from imagen.cloud.store import CloudRecord, CloudStore
    from imagen.output import SavedImage

__all__ = ["LOCAL_OWNER", "OUTCOMES", "images_row", "object_path", "open_store", "sync_image"]

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


def images_row(
    image: SavedImage, record: dict[str, Any], owner: str, cloud: CloudRecord
) -> dict[str, Any]:
    """The ``imagen.record_synced_image`` arguments of a synced image."""
    return {
        "bucket": cloud.bucket,
        "path": cloud.path,
        "owner": owner,
        "local_path": str(image.path.resolve()),
        "prompt": record.get("prompt") or "",
        "backend": record.get("backend") or "unknown",
        "seed": record.get("image_seed", record.get("seed")),
        "width": record.get("width"),
        "height": record.get("height"),
        "mime_type": image.mime_type,
        "metadata": record.get("metadata") or {},
    }


def sync_image(
    store: CloudStore, settings: CloudSettings, image: SavedImage, owner: str, *, record_row: bool
) -> str:
    """Upload ``image``, record where it went in its sidecar, and record its images row.

    Safe under concurrency: the image file is claimed first (an advisory lock, released at
    the end), so a second sync of the same image on this machine skips it instead of
    repeating the work; across machines, the same bytes at the same path count as uploaded
    and the images row is recorded once (:meth:`CloudStore.record_image`).

    :returns: one of :data:`OUTCOMES`: ``uploaded`` when this call stored the object,
        ``already uploaded`` when it was there already (or another sync finished it
        meanwhile), ``busy`` when another sync holds the image right now.
    """
    with _claimed(image.path) as claimed:
        if not claimed:
            return "busy"
        if _synced_meanwhile(image):
            return "already uploaded"
        path = object_path(settings, image.record, image.path, owner)
        cloud, stored = _retried(
            lambda: store.upload(image.path, path, image.mime_type), f"uploading {path}", settings
        )
        if record_row and settings.record_images:
            store.record_image(images_row(image, image.record, owner, cloud))
        image.update_sidecar(cloud=cloud.to_dict())
    return "uploaded" if stored else "already uploaded"


OUTCOMES = ("uploaded", "already uploaded", "busy")


@contextmanager
def _claimed(path: Path) -> Iterator[bool]:
    """Hold an exclusive advisory lock on ``path`` if nobody else does; whether we got it."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks here: the upload and the record are idempotent anyway
        yield True
        return
    with path.open("rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _synced_meanwhile(image: SavedImage) -> bool:
    """Whether another sync recorded ``image`` in its sidecar since we read it."""
    if image.sidecar is None or image.record.get("cloud"):
        return bool(image.record.get("cloud"))
    try:
        cloud = json.loads(image.sidecar.read_text(encoding="utf-8")).get("cloud")
    except (OSError, ValueError, AttributeError):
        return False
    if cloud:
        image.record["cloud"] = cloud
        return True
    return False


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

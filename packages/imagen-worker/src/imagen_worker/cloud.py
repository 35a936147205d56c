"""Cloud sync in the worker: a failed upload is retried without generating the images again.

When the pipeline's cloud step fails for a job, the images are already on disk (and paid
for). The worker keeps their paths in the job's ``progress.saved`` and retries the job as a
transient failure; the next attempt finds them there and only uploads what is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imagen import TransientBackendError
from imagen.cloud.errors import CloudError
from imagen.config import Config
from imagen.metadata.reader import sidecar_path
from imagen.output import SavedImage
from imagen.pipeline import Outcome

__all__ = ["check_synced", "kept_images", "sync_kept"]


# What the job's row says to do. Its owner reads it too: it names no file of the worker's,
# and its remedy keeps the images the owner's (`imagen cloud sync` on the worker's output
# directory leaves them to the worker).
_REMEDY = (
    "the images are kept: the next attempt uploads them without generating them again "
    "(once the job has failed, imagen jobs retry ID does)"
)


def check_synced(outcome: Outcome) -> None:
    """Raise a transient error when the pipeline's cloud step failed for ``outcome``."""
    failures = [f.error for f in outcome.step_failures if isinstance(f.error, CloudError)]
    if failures:
        raise TransientBackendError(f"cloud sync failed: {failures[0]}; {_REMEDY}")


def kept_images(row: dict[str, Any]) -> list[SavedImage] | None:
    """The images an earlier attempt saved but could not sync; None when there are none.

    Only images whose files and sidecars are still there count: otherwise the job
    generates again.
    """
    paths = (row.get("progress") or {}).get("saved")
    if not paths:
        return None
    images = []
    for text in paths:
        path = Path(text)
        sidecar = sidecar_path(path)
        if not path.is_file() or not sidecar.is_file():
            return None
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        images.append(SavedImage(path, record.get("mime_type", "image/png"), record, sidecar))
    return images


def sync_kept(config: Config, images: list[SavedImage], owner: str) -> Outcome:
    """Upload the kept images not uploaded yet; the outcome the job is recorded with."""
    from imagen.cloud.settings import read_cloud
    from imagen.cloud.sync import open_store, sync_image

    settings = read_cloud(config)
    pending = [image for image in images if not image.record.get("cloud")]
    if settings is not None and pending:
        store = open_store(settings)
        try:
            for image in pending:
                sync_image(store, settings, image, owner, record_row=False)
        except CloudError as exc:
            raise TransientBackendError(f"cloud sync failed again: {exc}; {_REMEDY}") from exc
        finally:
            store.close()
    return Outcome(images, {}, 0.0)

"""The pipeline step that indexes each image as it is saved (a plugin, like cloud sync).

Registered through imagen-core's ``imagen`` entry point, so every process that drives the
pipeline (``imagen generate``, the worker, ``imagen serve --with-worker``) records to the
same index. A failure to record is reported as a failed step; the image is kept.
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING

from imagen.plugins import hookimpl

if TYPE_CHECKING:
    from imagen.output import SavedImage
    from imagen.pipeline import Outcome, Run


_lock = threading.Lock()
_indexed: dict[int, tuple[str, list[str]]] = {}  # id(run) → (its key, the paths indexed)


def _enabled(run: Run) -> bool:
    from imagen.history.settings import HISTORY

    return bool(run.config.section_values("history", HISTORY)["record"])


@hookimpl
def imagen_image_saved(image: SavedImage, run: Run) -> None:
    if not _enabled(run):
        return
    from imagen.history.index import HistoryIndex

    record = image.record
    metadata = record.get("metadata") or {}
    seed = record.get("image_seed", record.get("seed"))
    cost = metadata.get("cost_usd")
    labels = run.labels
    path = str(image.path.expanduser().resolve())
    with _lock:
        key, paths = _indexed.setdefault(id(run), (uuid.uuid4().hex, []))
        paths.append(path)
    row = {
        "created": run.started.isoformat(),
        "path": path,
        "sidecar": str(image.sidecar.resolve()) if image.sidecar else None,
        "mime_type": image.mime_type,
        "prompt": run.original.prompt,
        "final_prompt": run.request.prompt,
        "negative_prompt": run.original.negative_prompt,
        "style": run.request.style,
        "backend": run.backend_name,
        "backend_type": run.backend_type,
        "model": str(metadata["model"]) if metadata.get("model") else None,
        "seed": str(seed) if isinstance(seed, int) else None,
        "width": record.get("width"),
        "height": record.get("height"),
        "cost_usd": float(cost) if isinstance(cost, int | float) and count_once(image) else None,
        "entry": str(labels.get("entry", "cli")),
        "job_id": labels.get("job_id") if isinstance(labels.get("job_id"), int) else None,
        "owner": str(labels["owner"]) if labels.get("owner") is not None else None,
        "run": key,
    }
    HistoryIndex.default(run.config).add([row])


def count_once(image: SavedImage) -> bool:
    """The run's cost is on every image's record: count it on the first image only."""
    return image.record.get("index", 1) == 1


@hookimpl
def imagen_run_finished(run: Run, outcome: Outcome | None, error: BaseException | None) -> None:
    """A run that failed and removed what it had saved (the worker's) forgets it here too."""
    with _lock:
        _, paths = _indexed.pop(id(run), ("", []))
    if error is None or run.keep_partial or not paths:
        return
    from imagen.history.index import HistoryIndex

    HistoryIndex.default(run.config).forget_paths(paths)

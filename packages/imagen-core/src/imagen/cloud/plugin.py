"""The cloud sync step: each saved image uploaded and recorded (``imagen_image_saved``).

Registered through imagen-core's own ``imagen`` entry point; it does nothing without a
``cloud:`` section, and imports supabase-py only when there is one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imagen.plugins import hookimpl

if TYPE_CHECKING:
    from imagen.cloud.store import CloudStore
    from imagen.output import SavedImage
    from imagen.pipeline import Run

_stores: dict[int, CloudStore] = {}  # one per run, closed when it finishes


@hookimpl
def imagen_image_saved(image: SavedImage, run: Run) -> None:
    from imagen.cloud.errors import CloudError
    from imagen.cloud.settings import read_cloud
    from imagen.cloud.sync import LOCAL_OWNER, open_store, sync_image

    worker = run.labels.get("entry") == "worker"
    owner = str(run.labels.get("owner") or LOCAL_OWNER)
    if worker and image.record.get("job") is None:
        # Whose image this is, for any later sync of the worker's output directory: it
        # belongs under its owner's folder and to its job, never to "local".
        image.update_sidecar(job={"id": run.labels.get("job_id"), "owner": owner})
    settings = read_cloud(run.config)
    if settings is None:
        return
    store = _stores.get(id(run))
    if store is None:
        store = _stores[id(run)] = open_store(settings)
    try:
        # The worker inserts images rows in the transaction that marks its job done.
        sync_image(store, settings, image, owner, record_row=not worker)
    except CloudError as exc:
        if worker:
            raise  # its job's row says what to do, without the worker's file paths
        raise CloudError(
            f"{exc}; the image stays at {image.path} (`imagen cloud sync` uploads it later)",
            transient=exc.transient,
        ) from exc


@hookimpl
def imagen_run_finished(run: Run) -> None:
    store = _stores.pop(id(run), None)
    if store is not None:
        store.close()

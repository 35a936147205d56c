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

    settings = read_cloud(run.config)
    if settings is None:
        return
    store = _stores.get(id(run))
    if store is None:
        store = _stores[id(run)] = open_store(settings)
    owner = str(run.labels.get("owner") or LOCAL_OWNER)
    try:
        # The worker inserts images rows in the transaction that marks its job done.
        sync_image(store, settings, image, owner, record_row=run.labels.get("entry") != "worker")
    except CloudError as exc:
        raise CloudError(
            f"{exc}; the image stays at {image.path} (`imagen cloud sync` uploads it later)",
            transient=exc.transient,
        ) from exc


@hookimpl
def imagen_run_finished(run: Run) -> None:
    store = _stores.pop(id(run), None)
    if store is not None:
        store.close()

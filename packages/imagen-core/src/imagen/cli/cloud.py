"""``imagen cloud sync``: upload the images whose sidecars have no cloud record yet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from imagen.cli import STEP_FAILED, State


@click.group()
def cloud() -> None:
    """Supabase Storage: catch up on images that were not uploaded."""


@cloud.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image.")
@click.pass_obj
def sync(state: State, directory: Path | None, as_json: bool) -> None:
    """Upload every image under DIRECTORY (default: output.directory) not uploaded yet.

    An image counts as uploaded when its sidecar has a cloud record. Safe to run again and
    again, and several at once: an image another sync is uploading is skipped, an object
    already holding the same bytes counts as uploaded, and each image gets one images row.
    Images the worker made are left to it: they belong to a job and its owner.
    """
    from imagen.cloud.errors import CloudError
    from imagen.cloud.settings import read_cloud
    from imagen.cloud.sync import LOCAL_OWNER, open_store, sync_image
    from imagen.errors import ConfigError
    from imagen.metadata import EXTENSIONS
    from imagen.output import SavedImage

    config = state.config()
    settings = read_cloud(config)
    if settings is None:
        raise ConfigError("no cloud: section (or cloud.enabled is false): nothing to sync to")
    root = directory or config.output.directory
    if not root.is_dir():
        raise click.UsageError(f"{root} is not a directory")
    pending = []
    for sidecar in sorted(root.rglob("*.json")):
        try:
            record = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not an imagen sidecar
        if not isinstance(record, dict) or "imagen_version" not in record or record.get("cloud"):
            continue
        mime_type = record.get("mime_type")
        image = sidecar.with_suffix("." + EXTENSIONS.get(mime_type, "bin"))
        if image.is_file():
            pending.append(SavedImage(image, mime_type, record, sidecar))
    counts = dict.fromkeys(_OUTCOMES, 0)
    store = None
    try:
        for number, image in enumerate(pending, start=1):
            job = image.record.get("job")
            outcome: dict[str, Any] = {"image": str(image.path)}
            if isinstance(job, dict):
                outcome.update(status="left to the worker", job=job.get("id"))
                line = (
                    f"{image.path}: job {job.get('id')}'s image, left to the worker "
                    f"(if the job failed, imagen jobs retry {job.get('id')} uploads it)"
                )
            else:
                store = store or open_store(settings)
                try:
                    status = sync_image(store, settings, image, LOCAL_OWNER, record_row=True)
                except CloudError as exc:
                    outcome.update(status="failed", error=str(exc))
                    line = f"{image.path}: failed: {exc}"
                else:
                    outcome.update(status=status, cloud=image.record.get("cloud"))
                    line = {
                        "uploaded": f"{image.path} → {_where(image)}",
                        "already uploaded": f"{image.path} → {_where(image)} (already there)",
                        "busy": f"{image.path}: another sync is uploading it",
                    }[status]
            counts[outcome["status"]] += 1
            if as_json:
                click.echo(json.dumps(outcome))
            else:
                click.echo(f"[{number}/{len(pending)}] {line}", err=outcome["status"] == "failed")
    finally:
        if store is not None:
            store.close()
    if not as_json:
        extra = "".join(f", {counts[name]} {_SUMMARY[name]}" for name in _SUMMARY if counts[name])
        click.echo(f"{counts['uploaded']} uploaded, {counts['failed']} failed{extra}, under {root}")
    if counts["failed"]:
        raise click.exceptions.Exit(STEP_FAILED)


_OUTCOMES = ("uploaded", "already uploaded", "busy", "left to the worker", "failed")
_SUMMARY = {
    "already uploaded": "already uploaded",
    "busy": "being uploaded by another sync",
    "left to the worker": "left to the worker",
}


def _where(image: Any) -> str:
    cloud = image.record.get("cloud") or {}
    return f"{cloud.get('bucket')}/{cloud.get('path')}"

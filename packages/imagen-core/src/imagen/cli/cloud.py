"""``imagen cloud sync``: upload the images whose sidecars have no cloud record yet."""

from __future__ import annotations

import json
from pathlib import Path

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

    An image counts as uploaded when its sidecar has a cloud record. Safe to run again
    and again: an object already holding the same bytes counts as uploaded.
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
    failed = 0
    store = open_store(settings) if pending else None
    try:
        for number, image in enumerate(pending, start=1):
            owner = str(image.record.get("owner") or LOCAL_OWNER)
            try:
                sync_image(store, settings, image, owner, record_row=True)
            except CloudError as exc:
                failed += 1
                outcome = {"image": str(image.path), "error": str(exc)}
                if not as_json:
                    click.echo(f"[{number}/{len(pending)}] {image.path}: failed: {exc}", err=True)
            else:
                outcome = {"image": str(image.path), "cloud": image.record["cloud"]}
                if not as_json:
                    click.echo(
                        f"[{number}/{len(pending)}] {image.path} → {image.record['cloud']['path']}"
                    )
            if as_json:
                click.echo(json.dumps(outcome))
    finally:
        if store is not None:
            store.close()
    if not as_json:
        click.echo(f"{len(pending) - failed} uploaded, {failed} failed, under {root}")
    if failed:
        raise click.exceptions.Exit(STEP_FAILED)

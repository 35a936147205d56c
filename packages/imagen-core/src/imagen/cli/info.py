"""``imagen info``: how an image was made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

SOURCES = {
    "imagen": "imagen metadata inside the file",
    "sidecar": "imagen sidecar JSON beside the file",
    "a1111": "A1111-style parameters inside the file",
    "comfyui": "ComfyUI workflow inside the file",
}


def _replay_line(fields: dict[str, Any]) -> str:
    reproducible = fields.get("reproducible")
    backend = fields.get("backend")
    if reproducible is True:
        return f'the same seed gives the same pixels (backend "{backend}" promises it)'
    if reproducible is False:
        return (
            f'backend "{backend}" does not promise the same pixels for the same seed: '
            "a replay gives a similar image"
        )
    return "unknown: the tool that made it did not say whether its seeds are reproducible"


def _rows(info: Any) -> list[tuple[str, Any]]:
    fields = info.fields
    size = f"{info.width}×{info.height}" if info.width else "unknown size"
    rows: list[tuple[str, Any]] = [
        ("file", info.path),
        ("format", f"{info.mime_type}, {size}"),
        ("source", SOURCES.get(info.source or "", "none: the file carries no parameters")),
    ]
    if not info.source:
        return rows
    seed = fields.get("seed")
    if fields.get("image_seed") is not None and fields["image_seed"] != seed:
        seed = f"{fields['image_seed']} (request seed {seed})"
    count = fields.get("count")
    count = f"{fields.get('index') or '?'} of {count}" if count and count > 1 else None
    backend = fields.get("backend")
    if backend and fields.get("backend_type"):
        backend = f"{backend} (type {fields['backend_type']})"
    rows += [
        ("prompt", fields.get("prompt")),
        (
            "final prompt",
            fields.get("final_prompt")
            if fields.get("final_prompt") != fields.get("prompt")
            else None,
        ),
        ("negative", fields.get("negative_prompt") or None),
        (
            # What the backend was sent: the style's negative suffix added to the flag's.
            "final negative",
            fields.get("final_negative_prompt")
            if fields.get("final_negative_prompt") != (fields.get("negative_prompt") or "")
            else None,
        ),
        ("style", fields.get("style")),
        ("backend", backend),
        ("model", fields.get("model") or (info.record or {}).get("metadata", {}).get("model")),
        ("seed", seed),
        ("steps", fields.get("steps")),
        ("size", f"{fields['width']}×{fields['height']}" if fields.get("width") else None),
        ("image", count),
        ("strength", fields.get("strength")),
        *_input_rows(fields.get("inputs")),
        ("created", fields.get("created")),
        ("replay", _replay_line(fields)),
    ]
    return [(name, value) for name, value in rows if value not in (None, "")]


def _input_rows(inputs: Any) -> list[tuple[str, Any]]:
    """One row per input image: its role, name, size and the start of its hash."""
    rows = []
    for item in inputs if isinstance(inputs, list) else []:
        if not isinstance(item, dict):
            continue
        size = f"{item.get('width')}×{item.get('height')}, {item.get('size')} bytes"
        sha = str(item.get("sha256") or "")[:12]
        rows.append((f"input {item.get('role')}", f"{item.get('name')} ({size}, sha256 {sha}…)"))
    return rows


@click.command()
@click.argument("image", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print everything found, as JSON.")
def info(image: Path, as_json: bool) -> None:
    """Show how IMAGE was made.

    Reads imagen's own metadata (inside a PNG, or the sidecar JSON beside the image), or
    the parameters other tools write (A1111 `parameters`, ComfyUI workflows).
    """
    from imagen.metadata.reader import read_image_info

    found = read_image_info(image)
    if as_json:
        data = found.to_dict()
        data["replay"] = _replay_line(found.fields) if found.source else None
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return
    rows = _rows(found)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name + ':':<{width + 1}} {value}")

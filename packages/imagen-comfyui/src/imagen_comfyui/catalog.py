"""What a ComfyUI server has: its version, and the model files its loader nodes can load.

Both come from endpoints that run nothing: ``/system_stats`` and ``/object_info/{Class}``,
whose loader classes list their files as the choices of one input.
"""

from __future__ import annotations

from typing import Any

from imagen import ModelInfo, PermanentBackendError
from imagen_comfyui.client import ComfyClient, choices, node_name

__all__ = ["LOADERS", "list_models", "probe"]

LOADERS = {
    "CheckpointLoaderSimple": ("ckpt_name", "checkpoint"),
    "UNETLoader": ("unet_name", "unet"),
    "LoraLoader": ("lora_name", "lora"),
    "VAELoader": ("vae_name", "vae"),
}


def _files(client: ComfyClient, class_type: str) -> list[str] | None:
    """The files ``class_type``'s loader input can take; None if the server has no such node."""
    info = client.object_info(class_type)
    if not info:
        return None
    spec = info.get("input") or {}
    inputs = {**(spec.get("required") or {}), **(spec.get("optional") or {})}
    return choices(inputs.get(LOADERS[class_type][0])) or []


def _used(graph: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Each (node, class, file) the workflow loads by name."""
    found = []
    for node, entry in graph.items():
        kind = entry.get("class_type")
        if kind in LOADERS:
            value = (entry.get("inputs") or {}).get(LOADERS[kind][0])
            if isinstance(value, str):
                found.append((node, kind, value))
    return found


def list_models(client: ComfyClient, graph: dict[str, Any]) -> list[ModelInfo]:
    """Every file the server's loaders can load, the workflow's own marked current."""
    used = {(kind, value) for _, kind, value in _used(graph)}
    models = []
    for class_type, (_, kind) in LOADERS.items():
        for name in _files(client, class_type) or []:
            models.append(ModelInfo(name, kind, class_type, current=(class_type, name) in used))
    return models


def probe(client: ComfyClient, graph: dict[str, Any]) -> str:
    """That the server answers, and has every file the workflow loads."""
    stats = client.system_stats()
    system = stats.get("system") or {}
    devices = [str(d.get("name", "?")) for d in stats.get("devices") or [] if isinstance(d, dict)]
    version = system.get("comfyui_version") or "(version not reported)"
    used = _used(graph)
    for node, class_type, value in used:
        files = _files(client, class_type)
        if files is None:
            raise PermanentBackendError(
                f"ComfyUI at {client.base_url} has no {class_type} node, which the workflow "
                f"uses ({node_name(graph, node)})"
            )
        if value not in files:
            shown = ", ".join(files[:10]) + (
                f", … ({len(files) - 10} more)" if len(files) > 10 else ""
            )
            raise PermanentBackendError(
                f"ComfyUI at {client.base_url} has no {LOADERS[class_type][1]} {value!r} "
                f"({node_name(graph, node)}); it has: {shown or 'none'}"
            )
    files = ", ".join(value for _, _, value in used)
    return (
        f"ComfyUI {version} answers"
        + (f" on {', '.join(devices)}" if devices else "")
        + (f"; it has {files}" if files else "")
    )

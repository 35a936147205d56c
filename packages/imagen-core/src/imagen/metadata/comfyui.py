"""Summarize a ComfyUI API graph (the ``prompt`` PNG chunk ComfyUI writes) as parameters."""

from __future__ import annotations

from typing import Any

__all__ = ["summarize_graph"]

_SAMPLERS = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
_LOADERS = {"CheckpointLoaderSimple": "ckpt_name", "UNETLoader": "unet_name"}


def _node(graph: dict[str, Any], link: Any) -> dict[str, Any] | None:
    if isinstance(link, list) and link and str(link[0]) in graph:
        node = graph[str(link[0])]
        return node if isinstance(node, dict) else None
    return None


def _follow(graph: dict[str, Any], link: Any, want: str, depth: int = 0) -> Any:
    """The first literal input named ``want`` found walking upstream from ``link``."""
    node = _node(graph, link)
    if node is None or depth > 20:
        return None
    inputs = node.get("inputs") or {}
    if want in inputs and not isinstance(inputs[want], list):
        return inputs[want]
    for value in inputs.values():
        found = _follow(graph, value, want, depth + 1)
        if found is not None:
            return found
    return None


def summarize_graph(graph: dict[str, Any]) -> dict[str, Any]:
    """Prompt, negative prompt, seed, steps, size and model of the graph's first sampler."""
    nodes = [n for n in graph.values() if isinstance(n, dict)]
    sampler = next((n for n in nodes if n.get("class_type") in _SAMPLERS), None)
    fields: dict[str, Any] = {"reproducible": None}
    if sampler is None:
        return fields
    inputs = sampler.get("inputs") or {}
    noise = inputs.get("noise")
    seed = inputs.get("seed", inputs.get("noise_seed"))
    if seed is None and noise is not None:
        seed = _follow(graph, noise, "noise_seed")
    steps = inputs.get("steps")
    if steps is None or isinstance(steps, list):
        steps = _follow(graph, inputs.get("sigmas"), "steps")
    guider = inputs.get("guider")
    fields.update(
        prompt=_follow(graph, inputs.get("positive", guider), "text"),
        negative_prompt=_follow(graph, inputs.get("negative"), "text") or "",
        seed=seed,
        steps=steps,
        cfg=inputs.get("cfg"),
        sampler=inputs.get("sampler_name"),
        scheduler=inputs.get("scheduler"),
    )
    latent = inputs.get("latent_image")
    fields.update(
        width=_follow(graph, latent, "width"),
        height=_follow(graph, latent, "height"),
        count=_follow(graph, latent, "batch_size"),
    )
    for node in nodes:
        key = _LOADERS.get(node.get("class_type", ""))
        if key and isinstance((node.get("inputs") or {}).get(key), str):
            fields["model"] = node["inputs"][key]
            break
    return fields

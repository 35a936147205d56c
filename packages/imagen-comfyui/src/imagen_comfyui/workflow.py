"""Workflows: which node inputs receive the prompt, seed, size, count and input images.

A mapping target is written ``NODE.input``, where NODE is a node id (``"6"``) or a node's
title (``_meta.title``, the name the user gave it in the UI), so an edited workflow whose
ids changed keeps working. Without an explicit mapping, the standard nodes are found by
following the sampler's links. Input images (``image``, ``mask``) and ``strength`` are
never guessed: a workflow takes them only where its mapping says (a LoadImage feeding a
ControlNet must not receive the picture to edit).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagen import Request

__all__ = [
    "FIELDS",
    "INPUT_FIELDS",
    "Target",
    "Workflow",
    "WorkflowError",
    "detect",
    "parse_graph",
]

FIELDS = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "width",
    "height",
    "count",
    "image",
    "mask",
    "strength",
)
INPUT_FIELDS = ("image", "mask")
"""Fields whose value is the name of a file uploaded to ComfyUI's input folder."""
_EXPLICIT_ONLY = (*INPUT_FIELDS, "strength")
SEED_INPUTS = ("seed", "noise_seed")
_REQUEST_ATTRIBUTE = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "seed": "seed",
    "steps": "steps",
    "width": "width",
    "height": "height",
    "count": "count",
    "strength": "strength",
}
_NOT_CONDITIONING = {
    "clip",
    "model",
    "vae",
    "latent_image",
    "samples",
    "noise",
    "sigmas",
    "sampler",
    "control_net",
    "image",
    "mask",
}


class WorkflowError(ValueError):
    """A workflow or mapping problem; ``key`` is the slice key to blame."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Target:
    """One node input that receives a request field."""

    node: str
    input: str

    def __str__(self) -> str:
        return f"{self.node}.{self.input}"


def _describe(graph: Mapping[str, Any], node: str) -> str:
    entry = graph[node]
    title = (entry.get("_meta") or {}).get("title")
    kind = entry.get("class_type", "?")
    return f'{node} ({kind} "{title}")' if title and title != kind else f"{node} ({kind})"


def parse_graph(data: Any, where: str, key: str) -> dict[str, Any]:
    """Check that ``data`` is an API-format graph; ``where`` names its source in errors."""
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise WorkflowError(
            f"{where} is in ComfyUI's UI format; export it with the workflow menu's "
            '"Export (API)" (older versions: enable the dev mode options in the settings, '
            'then "Save (API Format)")',
            key,
        )
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]  # a /prompt request body saved whole
    if not isinstance(data, dict) or not data:
        raise WorkflowError(f"{where} does not hold an API-format graph (node id → node)", key)
    for node, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("class_type"), str):
            raise WorkflowError(f"{where}: node {node} has no class_type", key)
        if not isinstance(entry.get("inputs", {}), dict):
            raise WorkflowError(f"{where}: node {node} has no inputs mapping", key)
    return {str(node): entry for node, entry in data.items()}


def load_graph(path: Path, key: str) -> dict[str, Any]:
    """Read an API-format workflow file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"cannot read {path}: {exc}", key) from exc
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}", key) from exc
    return parse_graph(data, str(path), key)


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int)


def _is_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _inputs(graph: Mapping[str, Any], node: str) -> dict[str, Any]:
    return graph[node].get("inputs") or {}


def resolve(graph: Mapping[str, Any], spec: Any, key: str) -> Target:
    """The target that ``spec`` (``"6.text"`` or ``"Positive Prompt.text"``) names."""
    if not isinstance(spec, str) or "." not in spec:
        raise WorkflowError(f"{spec!r} must look like NODE.input (a node id or title)", key)
    name, _, input_name = spec.rpartition(".")
    if name in graph:
        node = name
    else:
        titled = [n for n, e in graph.items() if (e.get("_meta") or {}).get("title") == name]
        if not titled:
            known = ", ".join(_describe(graph, n) for n in graph)
            raise WorkflowError(f"no node with id or title {name!r} (nodes: {known})", key)
        if len(titled) > 1:
            nodes = " and ".join(_describe(graph, n) for n in titled)
            raise WorkflowError(f"title {name!r} is ambiguous: {nodes}; use the node id", key)
        node = titled[0]
    inputs = _inputs(graph, node)
    if input_name not in inputs:
        names = ", ".join(inputs) or "none"
        raise WorkflowError(
            f"node {_describe(graph, node)} has no input {input_name!r} (inputs: {names})", key
        )
    if _is_link(inputs[input_name]):
        source = str(inputs[input_name][0])
        raise WorkflowError(
            f"{_describe(graph, node)}.{input_name} is connected to node "
            f"{_describe(graph, source)}; map an input of that node instead",
            key,
        )
    return Target(node, input_name)


# -- detection ------------------------------------------------------------------------------


def _samplers(graph: Mapping[str, Any]) -> list[str]:
    return [
        n
        for n, e in graph.items()
        if "Sampler" in e.get("class_type", "") and "latent_image" in _inputs(graph, n)
    ]


def _walk(graph: Mapping[str, Any], link: Any, branch: str, seen: set[str]) -> Iterator[str]:
    """Nodes with a literal ``text`` input upstream of ``link`` on the ``branch`` path."""
    if not _is_link(link) or str(link[0]) not in graph or str(link[0]) in seen:
        return
    node = str(link[0])
    seen.add(node)
    inputs = _inputs(graph, node)
    if isinstance(inputs.get("text"), str):
        yield node
        return
    for name, value in inputs.items():
        if name in _NOT_CONDITIONING:
            continue
        if name in ("positive", "negative") and name != branch:
            continue  # a node carrying both branches: stay on ours
        yield from _walk(graph, value, branch, seen)


def _text_targets(graph: Mapping[str, Any], branch: str) -> list[str]:
    found: list[str] = []
    for sampler in _samplers(graph):
        inputs = _inputs(graph, sampler)
        start = inputs.get(branch)
        if start is None and branch == "positive":
            start = inputs.get("guider")
        for node in _walk(graph, start, branch, set()):
            if node not in found:
                found.append(node)
    return found


def detect(graph: Mapping[str, Any], wanted: Iterable[str] = FIELDS) -> dict[str, list[Target]]:
    """Find the standard nodes' inputs for the ``wanted`` fields.

    :raises WorkflowError: when a wanted field has several candidate nodes (naming them),
        or the prompt is wanted and no prompt input can be found.
    """
    wanted = set(wanted)
    # Every seed input, sampler or not: a graph whose image comes from an API node or a
    # custom generator would otherwise make the same picture for "different" seeds.
    seeds = [
        Target(n, name)
        for n in graph
        for name in SEED_INPUTS
        if _is_number(_inputs(graph, n).get(name))
    ]
    if not _samplers(graph):
        if "prompt" not in wanted:
            return {"seed": seeds} if seeds and "seed" in wanted else {}
        raise WorkflowError(
            "no sampler node found (KSampler, SamplerCustomAdvanced, ...): "
            "map the inputs explicitly under `inputs:`",
            "workflow",
        )
    found: dict[str, list[Target]] = {}
    for field, branch in (("prompt", "positive"), ("negative_prompt", "negative")):
        if field not in wanted:
            continue
        nodes = _text_targets(graph, branch)
        if len(nodes) > 1:
            listed = ", ".join(_describe(graph, n) for n in nodes)
            raise WorkflowError(
                f"cannot tell which node takes the {field.replace('_', ' ')}: {listed}; "
                f"map it under inputs.{field}",
                f"inputs.{field}",
            )
        if nodes:
            found[field] = [Target(nodes[0], "text")]
    if "prompt" in wanted and "prompt" not in found:
        raise WorkflowError(
            "no prompt input found (a CLIPTextEncode on the sampler's positive "
            "input); map it under inputs.prompt",
            "inputs.prompt",
        )
    found["seed"] = seeds
    found["steps"] = [
        Target(n, "steps")
        for n, e in graph.items()
        if _is_number(_inputs(graph, n).get("steps"))
        and ("Sampler" in e["class_type"] or "Scheduler" in e["class_type"])
    ]
    latents = []
    for sampler in _samplers(graph):
        link = _inputs(graph, sampler).get("latent_image")
        node = str(link[0]) if _is_link(link) else None
        if node in graph and graph[node]["class_type"].startswith("Empty") and node not in latents:
            latents.append(node)
    if len(latents) > 1 and wanted & {"width", "height", "count"}:
        listed = ", ".join(_describe(graph, n) for n in latents)
        raise WorkflowError(
            f"several empty latent images: {listed}; map inputs.width, "
            "inputs.height and inputs.count",
            "inputs.width",
        )
    if latents:
        inputs = _inputs(graph, latents[0])
        for field, name in (("width", "width"), ("height", "height"), ("count", "batch_size")):
            if isinstance(inputs.get(name), int):
                found[field] = [Target(latents[0], name)]
    return {field: targets for field, targets in found.items() if targets and field in wanted}


def _check_input_targets(graph: Mapping[str, Any], targets: Mapping[str, list[Target]]) -> None:
    """Input images go to file-name inputs, strength to a number; a mask needs an image."""
    for field in INPUT_FIELDS:
        for target in targets.get(field, []):
            value = _inputs(graph, target.node)[target.input]
            if not isinstance(value, str):
                raise WorkflowError(
                    f"{_describe(graph, target.node)}.{target.input} holds {value!r}, not a "
                    f"file name: map inputs.{field} to a LoadImage's image input",
                    f"inputs.{field}",
                )
    for target in targets.get("strength", []):
        value = _inputs(graph, target.node)[target.input]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise WorkflowError(
                f"{_describe(graph, target.node)}.{target.input} holds {value!r}, not a "
                "number: map inputs.strength to a sampler's denoise input",
                "inputs.strength",
            )
    if targets.get("mask") and not targets.get("image"):
        raise WorkflowError(
            "a mask applies to an image: map inputs.image too (the LoadImage of the "
            "picture to edit)",
            "inputs.mask",
        )


# -- applying a request ------------------------------------------------------------------------


@dataclass
class Workflow:
    """A graph and the node inputs each request field goes to."""

    graph: dict[str, Any]
    targets: dict[str, list[Target]]
    source: str

    @classmethod
    def build(
        cls,
        graph: dict[str, Any],
        mapping: Mapping[str, Any] | None,
        source: str,
        *,
        complete: bool = False,
    ) -> Workflow:
        """Resolve an explicit ``mapping`` (lists or single specs), detecting the rest.

        :param complete: the mapping is all there is (a template's): detect nothing.
        """
        mapping = dict(mapping or {})
        for field in mapping:
            if field not in FIELDS:
                raise WorkflowError(
                    f"unknown field {field!r} (fields: {', '.join(FIELDS)})", f"inputs.{field}"
                )
        targets: dict[str, list[Target]] = {}
        for field, specs in mapping.items():
            specs = specs if isinstance(specs, list) else [specs]
            targets[field] = [resolve(graph, spec, f"inputs.{field}") for spec in specs]
        _check_input_targets(graph, targets)
        missing = [f for f in FIELDS if f not in targets and f not in _EXPLICIT_ONLY]
        if missing and not complete:
            targets.update(detect(graph, missing))
        return cls(graph, targets, source)

    def describe(self, target: Target) -> str:
        return _describe(self.graph, target.node)

    def apply(
        self,
        request: Request,
        seed: int | None,
        seed_max: Mapping[str, int] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """The graph to submit, the inputs that were set, and the fields left unmapped.

        :param seed_max: the largest value each seed target (``"NODE.input"``) accepts,
            where it is less than the seed: that input gets the seed modulo its range, so the
            same seed still makes the same picture (the value used is in the inputs set).
        :param files: for ``image`` and ``mask``, the name ComfyUI knows the uploaded input
            by (``imagen/<sha256>.png``), as a LoadImage's ``image`` input takes it; a
            LoadImageMask that receives the mask also gets the ``channel`` it is drawn in
            (``files["mask_channel"]``).
        """
        graph = copy.deepcopy(self.graph)
        values: dict[str, Any] = {
            field: getattr(request, attr) for field, attr in _REQUEST_ATTRIBUTE.items()
        }
        values["seed"] = seed
        for field in INPUT_FIELDS:
            values[field] = (files or {}).get(field)
        inputs_set: dict[str, Any] = {}
        ignored: list[str] = []
        for field in FIELDS:
            value = values[field]
            # Unset fields keep the workflow's own values (a curated negative prompt, say).
            if value in (None, "") or (
                field == "count" and value == 1 and field not in self.targets
            ):
                continue
            if field not in self.targets:
                ignored.append(field)
                continue
            for target in self.targets[field]:
                given = value
                top = (seed_max or {}).get(str(target)) if field == "seed" else None
                if top is not None and top >= 0 and given > top:
                    given = value % (top + 1)
                graph[target.node]["inputs"][target.input] = given
                inputs_set[str(target)] = given
        channel = (files or {}).get("mask_channel")
        for target in self.targets.get("mask", []) if values["mask"] and channel else []:
            node = graph[target.node]
            if node["class_type"] == "LoadImageMask" and isinstance(
                node["inputs"].get("channel"), str
            ):
                node["inputs"]["channel"] = channel
                inputs_set[f"{target.node}.channel"] = channel
        return graph, inputs_set, ignored

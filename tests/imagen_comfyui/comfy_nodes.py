"""The loopback ComfyUI's node catalogue and its graph rules: validation, order, cache keys.

What ComfyUI 0.3.64 does with a submitted graph (``shared/protocols.md``, "ComfyUI" and
"More seen on real servers"):

- A node of an unknown class anywhere in the graph rejects the whole graph (400
  ``invalid_prompt``), as does a graph with no output node (``prompt_no_outputs``).
- Otherwise only what feeds an output is validated, output by output. Outputs whose nodes
  all validate run; the others are left out, their failing nodes listed in ``node_errors``
  with ``dependent_outputs`` (the outputs that depend on that node). A 400
  (``prompt_outputs_failed_validation``) comes only when no output validates.
- A node that feeds no output is neither validated nor run.
- Caching is per node: a node whose class, literal inputs and upstream nodes are unchanged
  since the last prompt is not run again (its key is :func:`signatures`).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any

CHECKPOINTS = ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors"]
UNETS = ["flux1-schnell.safetensors", "flux1-dev.safetensors"]
CLIPS = ["clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "t5xxl_fp16.safetensors"]
VAES = ["ae.safetensors", "sdxl_vae.safetensors"]
LORAS = ["pixel-art-xl.safetensors", "detail-tweaker.safetensors"]
SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde"]
SCHEDULERS = ["normal", "karras", "simple", "sgm_uniform"]
SEED = ["INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}]
SIDE = ["INT", {"default": 1024, "min": 16, "max": 16384, "step": 8}]
BATCH = ["INT", {"default": 1, "min": 1, "max": 4096}]
FLOAT = ["FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0}]
STEPS = ["INT", {"default": 20, "min": 1, "max": 10000}]
OUTPUT_DIR = "/srv/ComfyUI/output"  # where this "server" keeps its outputs
INPUT_DIR = "/srv/ComfyUI/input"
INPUT_FILES = "<the files in input/>"  # a combo whose choices are the input folder's files
MASK_CHANNELS = ["alpha", "red", "green", "blue"]

NODES: dict[str, dict[str, Any]] = {
    "CheckpointLoaderSimple": {
        "required": {"ckpt_name": [CHECKPOINTS]},
        "output": ["MODEL", "CLIP", "VAE"],
    },
    "UNETLoader": {
        "required": {"unet_name": [UNETS], "weight_dtype": [["default", "fp8_e4m3fn"]]},
        "output": ["MODEL"],
    },
    "DualCLIPLoader": {
        "required": {
            "clip_name1": [CLIPS],
            "clip_name2": [CLIPS],
            "type": [["sdxl", "sd3", "flux"]],
        },
        "output": ["CLIP"],
    },
    "VAELoader": {"required": {"vae_name": [VAES]}, "output": ["VAE"]},
    "LoraLoader": {
        "required": {
            "model": ["MODEL"],
            "clip": ["CLIP"],
            "lora_name": [LORAS],
            "strength_model": ["FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0}],
            "strength_clip": ["FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0}],
        },
        "output": ["MODEL", "CLIP"],
    },
    "CLIPTextEncode": {
        "required": {"text": ["STRING", {"multiline": True}], "clip": ["CLIP"]},
        "output": ["CONDITIONING"],
    },
    "EmptyLatentImage": {
        "required": {"width": SIDE, "height": SIDE, "batch_size": BATCH},
        "output": ["LATENT"],
    },
    "EmptySD3LatentImage": {
        "required": {"width": SIDE, "height": SIDE, "batch_size": BATCH},
        "output": ["LATENT"],
    },
    "EmptyImage": {
        "required": {
            "width": SIDE,
            "height": SIDE,
            "batch_size": BATCH,
            "color": ["INT", {"default": 0, "min": 0, "max": 0xFFFFFF}],
        },
        "output": ["IMAGE"],
    },
    "KSampler": {
        "required": {
            "model": ["MODEL"],
            "seed": SEED,
            "steps": STEPS,
            "cfg": FLOAT,
            "sampler_name": [SAMPLERS],
            "scheduler": [SCHEDULERS],
            "positive": ["CONDITIONING"],
            "negative": ["CONDITIONING"],
            "latent_image": ["LATENT"],
            "denoise": FLOAT,
        },
        "output": ["LATENT"],
    },
    "LatentUpscale": {
        "required": {
            "samples": ["LATENT"],
            "upscale_method": [["nearest-exact"]],
            "width": SIDE,
            "height": SIDE,
            "crop": [["disabled"]],
        },
        "output": ["LATENT"],
    },
    "FluxGuidance": {
        "required": {"conditioning": ["CONDITIONING"], "guidance": FLOAT},
        "output": ["CONDITIONING"],
    },
    "RandomNoise": {"required": {"noise_seed": SEED}, "output": ["NOISE"]},
    "BasicGuider": {
        "required": {"model": ["MODEL"], "conditioning": ["CONDITIONING"]},
        "output": ["GUIDER"],
    },
    "KSamplerSelect": {"required": {"sampler_name": [SAMPLERS]}, "output": ["SAMPLER"]},
    "BasicScheduler": {
        "required": {
            "model": ["MODEL"],
            "scheduler": [SCHEDULERS],
            "steps": STEPS,
            "denoise": FLOAT,
        },
        "output": ["SIGMAS"],
    },
    "SamplerCustomAdvanced": {
        "required": {
            "noise": ["NOISE"],
            "guider": ["GUIDER"],
            "sampler": ["SAMPLER"],
            "sigmas": ["SIGMAS"],
            "latent_image": ["LATENT"],
        },
        "output": ["LATENT", "LATENT"],
    },
    "VAEDecode": {"required": {"samples": ["LATENT"], "vae": ["VAE"]}, "output": ["IMAGE"]},
    # nodes.py LoadImage / LoadImageMask: the combo lists input/'s files, but their
    # VALIDATE_INPUTS replaces the list check for `image`: any existing path passes
    # ("Invalid image file: X" otherwise), a file in a subfolder included.
    "LoadImage": {
        "required": {"image": [INPUT_FILES, {"image_upload": True}]},
        "output": ["IMAGE", "MASK"],
        "validate_inputs": ("image",),
    },
    "LoadImageMask": {
        "required": {
            "image": [INPUT_FILES, {"image_upload": True}],
            "channel": [MASK_CHANNELS],
        },
        "output": ["MASK"],
        "validate_inputs": ("image",),
    },
    "VAEEncode": {"required": {"pixels": ["IMAGE"], "vae": ["VAE"]}, "output": ["LATENT"]},
    "VAEEncodeForInpaint": {
        "required": {
            "pixels": ["IMAGE"],
            "vae": ["VAE"],
            "mask": ["MASK"],
            "grow_mask_by": ["INT", {"default": 6, "min": 0, "max": 64, "step": 1}],
        },
        "output": ["LATENT"],
    },
    "SetLatentNoiseMask": {
        "required": {"samples": ["LATENT"], "mask": ["MASK"]},
        "output": ["LATENT"],
    },
    "RepeatLatentBatch": {
        "required": {
            "samples": ["LATENT"],
            "amount": ["INT", {"default": 1, "min": 1, "max": 64}],
        },
        "output": ["LATENT"],
    },
    # An API node (comfy_api_nodes/nodes_openai.py): an image with no sampler in the graph.
    "OpenAIDalle3": {
        "required": {"prompt": ["STRING", {"multiline": True, "default": ""}]},
        "optional": {
            "seed": ["INT", {"default": 0, "min": 0, "max": 2**31 - 1}],
            "quality": [["standard", "hd"]],
            "style": [["natural", "vivid"]],
            "size": [["1024x1024", "1024x1792", "1792x1024"]],
        },
        "output": ["IMAGE"],
    },
    "SaveImage": {
        "required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
        "output": [],
        "output_node": True,
    },
    "PreviewImage": {"required": {"images": ["IMAGE"]}, "output": [], "output_node": True},
    "SaveLatent": {
        "required": {
            "samples": ["LATENT"],
            "filename_prefix": ["STRING", {"default": "latents/ComfyUI"}],
        },
        "output": [],
        "output_node": True,
    },
}
SAMPLER_NODES = ("KSampler", "SamplerCustomAdvanced")
GENERATOR_NODES = ("OpenAIDalle3",)  # make an image without a sampler
LATENT_NODES = ("EmptyLatentImage", "EmptySD3LatentImage")
IMAGE_LOADERS = ("LoadImage",)


def _with_files(config: list[Any], input_files: Any) -> list[Any]:
    """An input's definition, the input folder's top-level files as its choices."""
    if config and config[0] == INPUT_FILES:
        top = sorted(name for (_, folder, name) in input_files if folder == "")
        return [top, *config[1:]]
    return config


def object_info(name: str, input_files: Any = ()) -> dict[str, Any]:
    """``/object_info`` of class ``name``; ``input_files`` are (type, subfolder, name) keys."""
    spec = NODES[name]
    required = {key: _with_files(c, input_files) for key, c in spec["required"].items()}
    return {
        "input": {"required": required, "optional": spec.get("optional", {})},
        "input_order": {
            "required": list(spec["required"]),
            "optional": list(spec.get("optional", {})),
        },
        "output": spec["output"],
        "output_is_list": [False] * len(spec["output"]),
        "output_name": spec["output"],
        "name": name,
        "display_name": name,
        "description": "",
        "python_module": "nodes",
        "category": "stand-in",
        "output_node": spec.get("output_node", False),
    }


def is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def links(graph: dict[str, Any], node: str) -> list[list[Any]]:
    return [value for value in graph[node].get("inputs", {}).values() if is_link(value)]


def ancestors(graph: dict[str, Any], node: str) -> list[str]:
    """``node`` and every node it depends on, each after the nodes it needs (run order)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(current: str) -> None:
        if current in seen or current not in graph:
            return
        seen.add(current)  # before the links: a cycle must not recurse forever
        for link in links(graph, current):
            visit(link[0])
        order.append(current)

    visit(node)
    return order


def upstream(graph: dict[str, Any], node: str, class_names: tuple[str, ...]) -> str | None:
    """The nearest node of one of ``class_names`` feeding ``node`` (breadth first)."""
    frontier = [node]
    seen = set()
    while frontier:
        current = frontier.pop(0)
        if current in seen or current not in graph:
            continue
        seen.add(current)
        if graph[current]["class_type"] in class_names and current != node:
            return current
        frontier += [link[0] for link in links(graph, current)]
    return None


def is_output(graph: dict[str, Any], node: str) -> bool:
    return bool(NODES[graph[node]["class_type"]].get("output_node"))


# -- validation ---------------------------------------------------------------------------


def _error(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def input_path(name: str) -> tuple[str, str, str] | None:
    """Where folder_paths.get_annotated_filepath puts LoadImage's ``name``.

    ``(type, subfolder, file name)``: ``"x.png [output]"`` is in output/, anything else in
    input/. None for a path that leaves the folder (ComfyUI would look outside it; this
    server has nothing there).
    """
    kind = "input"
    for annotation in ("input", "output", "temp"):
        if name.endswith(f" [{annotation}]"):
            name, kind = name[: -len(annotation) - 3], annotation
    root = f"/srv/ComfyUI/{kind}"
    full = posixpath.normpath(posixpath.join(root, name))
    if posixpath.commonpath((root, full)) != root:
        return None
    relative = posixpath.relpath(full, root)
    if relative == ".":
        return kind, "", ""
    return kind, posixpath.dirname(relative), posixpath.basename(relative)


def path_exists(name: str, files: Any) -> bool:
    """folder_paths.exists_annotated_filepath: ``os.path.exists``, so a folder counts too."""
    place = input_path(name)
    if place is None:
        return False
    kind, folder, base = place
    if (kind, folder, base) in files:
        return True
    as_folder = posixpath.join(folder, base) if base else folder
    if as_folder == "":
        return True  # the folder itself ("" or "."): it always exists
    return any(
        k == kind and (f == as_folder or f.startswith(as_folder + "/")) for (k, f, _) in files
    )


def _input_errors(graph: dict[str, Any], node: str, input_files: Any = ()) -> list[dict[str, Any]]:
    """What is wrong with ``node``'s own inputs (not its upstream nodes')."""
    errors = []
    inputs = graph[node].get("inputs", {})
    spec = NODES[graph[node]["class_type"]]
    present = {name: c for name, c in spec.get("optional", {}).items() if name in inputs}
    custom = spec.get("validate_inputs", ())
    for name, config in {**spec["required"], **present}.items():
        config = _with_files(config, input_files)
        value = inputs.get(name)
        if name in custom and value is not None and not is_link(value):
            # execution.py: an input the class validates itself skips the type and list
            # checks; VALIDATE_INPUTS's string becomes the error's details.
            if not isinstance(value, str) or not path_exists(value, input_files):
                errors.append(
                    _error(
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        f"{name} - Invalid image file: {value}",
                        input_name=name,
                        input_config=config,
                        received_value=value,
                    )
                )
            continue
        if value is None:
            errors.append(
                _error("required_input_missing", "Required input is missing", name, input_name=name)
            )
        elif is_link(value):
            source = graph.get(value[0])
            if source is None:
                errors.append(
                    _error(
                        "exception_during_validation",
                        "Exception when validating inner node",
                        f"'{value[0]}'",
                        input_name=name,
                    )
                )
                continue
            returned = NODES[source["class_type"]]["output"]
            index = value[1]
            received = returned[index] if isinstance(index, int) and index < len(returned) else None
            if received != config[0]:
                errors.append(
                    _error(
                        "return_type_mismatch",
                        "Return type mismatch between linked nodes",
                        f"{name}, received_type({received}) mismatch input_type({config[0]})",
                        input_name=name,
                        input_config=config,
                        received_type=received,
                        linked_node=value,
                    )
                )
        elif isinstance(config[0], list):
            if value not in config[0]:
                errors.append(
                    _error(
                        "value_not_in_list",
                        "Value not in list",
                        f"{name}: '{value}' not in {config[0]}",
                        input_name=name,
                        input_config=[config[0], {"tooltip": f"The {name} to use."}],
                        received_value=value,
                    )
                )
        elif config[0] in ("INT", "FLOAT"):
            limits = config[1]
            if not isinstance(value, int | float) or isinstance(value, bool):
                errors.append(
                    _error(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {config[0]} value",
                        f"{name}, {value}",
                        input_name=name,
                        received_value=value,
                    )
                )
            elif value > limits["max"]:
                errors.append(
                    _error(
                        "value_bigger_than_max",
                        f"Value {value} bigger than max of {limits['max']}",
                        name,
                        input_name=name,
                        received_value=value,
                    )
                )
            elif value < limits["min"]:
                errors.append(
                    _error(
                        "value_smaller_than_min",
                        f"Value {value} smaller than min of {limits['min']}",
                        name,
                        input_name=name,
                        received_value=value,
                    )
                )
    return errors


def validate(
    graph: dict[str, Any], input_files: Any = ()
) -> tuple[dict[str, Any] | None, dict[str, Any], list[str]]:
    """Check ``graph`` as ComfyUI does before queueing it (``input_files``: what is on disk).

    :returns: the 400 answer (or None when something can run), the ``node_errors`` of the
        outputs left out, and the outputs that will run.
    """
    for node, entry in graph.items():
        if not isinstance(entry, dict) or "class_type" not in entry:
            problem = _error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node}'",
            )
            return {"error": problem, "node_errors": {}}, {}, []
        if entry["class_type"] not in NODES:
            problem = _error(
                "invalid_prompt",
                f"Cannot execute because node {entry['class_type']} does not exist.",
                f"Node ID '#{node}'",
            )
            return {"error": problem, "node_errors": {}}, {}, []
    outputs = [node for node in graph if is_output(graph, node)]
    if not outputs:
        problem = _error("prompt_no_outputs", "Prompt has no outputs")
        return {"error": problem, "node_errors": {}}, {}, []
    own_errors: dict[str, list[dict[str, Any]]] = {}
    node_errors: dict[str, Any] = {}
    good = []
    for output in outputs:
        failing = []
        for node in ancestors(graph, output):
            if node not in own_errors:
                own_errors[node] = _input_errors(graph, node, input_files)
            if own_errors[node]:
                failing.append(node)
        if not failing:
            good.append(output)
        for node in failing:
            entry = node_errors.setdefault(
                node,
                {
                    "errors": own_errors[node],
                    "dependent_outputs": [],
                    "class_type": graph[node]["class_type"],
                },
            )
            entry["dependent_outputs"].append(output)
    if not good:
        problem = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation")
        return {"error": problem, "node_errors": node_errors}, node_errors, []
    return None, node_errors, good


# -- running ------------------------------------------------------------------------------


def run_order(graph: dict[str, Any], outputs: list[str]) -> list[str]:
    """The nodes that feed ``outputs``, each after what it needs; nothing else."""
    order: list[str] = []
    for output in outputs:
        order += [node for node in ancestors(graph, output) if node not in order]
    return order


def signatures(graph: dict[str, Any], nodes: list[str], changed: Any = None) -> dict[str, str]:
    """Each node's cache key: its class, its literal inputs and its upstream nodes' keys.

    ``changed(node)``, when given, adds what a class's IS_CHANGED says (LoadImage: the
    SHA-256 of its file), so a file replaced under the same name is loaded again.
    """
    keys: dict[str, str] = {}

    def key(node: str) -> str:
        if node not in keys:
            keys[node] = ""  # a cycle gets a key, not a recursion error
            inputs = graph[node].get("inputs", {})
            parts = {
                name: ([key(value[0]), value[1]] if is_link(value) else value)
                for name, value in sorted(inputs.items())
            }
            extra = changed(node) if changed is not None else None
            text = json.dumps(
                [graph[node]["class_type"], parts, extra], sort_keys=True, default=str
            )
            keys[node] = hashlib.sha256(text.encode()).hexdigest()
        return keys[node]

    return {node: key(node) for node in nodes}


def save_path(prefix: str) -> tuple[str, str] | str:
    """SaveImage's (subfolder, file name stem) for ``filename_prefix``, or its error text.

    ComfyUI keeps every output inside its output folder: a prefix that leaves it raises an
    exception whose text spans several lines.
    """
    normal = posixpath.normpath(prefix)
    subfolder, stem = posixpath.dirname(normal), posixpath.basename(normal)
    full = posixpath.abspath(posixpath.join(OUTPUT_DIR, subfolder))
    common = posixpath.commonpath((OUTPUT_DIR, full))
    if common != OUTPUT_DIR:
        return (
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {full}"
            f"\n         output_dir: {OUTPUT_DIR}"
            f"\n         commonpath: {common}"
        )
    return subfolder, stem

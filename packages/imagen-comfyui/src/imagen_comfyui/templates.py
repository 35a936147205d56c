"""The built-in graphs, in ComfyUI's API format.

``checkpoint`` and ``flux-schnell`` make an image from text alone. ``img2img`` starts from
an input image (LoadImage → VAEEncode → KSampler, whose ``denoise`` is the request's
strength) and ``inpaint`` repaints where a mask says (LoadImage, LoadImageMask →
SetLatentNoiseMask, so a strength below 1 keeps some of what was there).
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAPPINGS", "NEEDS_IMAGE", "TEMPLATES", "template_graph"]

TEMPLATES = ("checkpoint", "flux-schnell", "img2img", "inpaint")
NEEDS_IMAGE = ("img2img", "inpaint")
"""Templates that start from an input image (and, for inpaint, a mask)."""

# Each template's mapping of request fields to node inputs ("node.input").
MAPPINGS: dict[str, dict[str, list[str]]] = {
    "checkpoint": {
        "prompt": ["6.text"],
        "negative_prompt": ["7.text"],
        "seed": ["3.seed"],
        "steps": ["3.steps"],
        "width": ["5.width"],
        "height": ["5.height"],
        "count": ["5.batch_size"],
    },
    "flux-schnell": {
        "prompt": ["6.text"],
        "seed": ["3.seed"],
        "steps": ["3.steps"],
        "width": ["5.width"],
        "height": ["5.height"],
        "count": ["5.batch_size"],
    },
    "img2img": {
        "prompt": ["6.text"],
        "negative_prompt": ["7.text"],
        "seed": ["3.seed"],
        "steps": ["3.steps"],
        "count": ["5.amount"],
        "image": ["Load Image.image"],
        "strength": ["3.denoise"],
    },
    "inpaint": {
        "prompt": ["6.text"],
        "negative_prompt": ["7.text"],
        "seed": ["3.seed"],
        "steps": ["3.steps"],
        "count": ["5.amount"],
        "image": ["Load Image.image"],
        "mask": ["Load Mask.image"],
        "strength": ["3.denoise"],
    },
}
_DENOISE = {"img2img": 0.75, "inpaint": 1.0}
"""The strength an image template runs at when the request gives none (A1111's defaults)."""


def _node(class_type: str, title: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}


def template_graph(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """The graph of template ``name`` with the slice's ``values`` filled in.

    ``values`` holds model, sampler, scheduler, cfg, steps, width, height and, for
    flux-schnell, clip_l, t5xxl and vae.
    """
    sampler = _node(
        "KSampler",
        "KSampler",
        seed=0,
        steps=values["steps"],
        cfg=values["cfg"],
        sampler_name=values["sampler"],
        scheduler=values["scheduler"],
        denoise=1.0,
        model=["4", 0],
        positive=["6", 0],
        negative=["7", 0],
        latent_image=["5", 0],
    )
    decode = _node("VAEDecode", "VAE Decode", samples=["3", 0], vae=["4", 2])
    save = _node("SaveImage", "Save Image", filename_prefix="imagen", images=["8", 0])
    if name == "checkpoint":
        return {
            "4": _node("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name=values["model"]),
            "5": _node(
                "EmptyLatentImage",
                "Empty Latent Image",
                width=values["width"],
                height=values["height"],
                batch_size=1,
            ),
            "6": _node("CLIPTextEncode", "Positive Prompt", text="", clip=["4", 1]),
            "7": _node("CLIPTextEncode", "Negative Prompt", text="", clip=["4", 1]),
            "3": sampler,
            "8": decode,
            "9": save,
        }
    if name == "flux-schnell":
        sampler["inputs"]["model"] = ["1", 0]
        decode["inputs"]["vae"] = ["2", 0]
        return {
            "1": _node(
                "UNETLoader",
                "Load Diffusion Model",
                unet_name=values["model"],
                weight_dtype="default",
            ),
            "4": _node(
                "DualCLIPLoader",
                "DualCLIPLoader",
                clip_name1=values["t5xxl"],
                clip_name2=values["clip_l"],
                type="flux",
            ),
            "2": _node("VAELoader", "Load VAE", vae_name=values["vae"]),
            "5": _node(
                "EmptySD3LatentImage",
                "Empty Latent Image",
                width=values["width"],
                height=values["height"],
                batch_size=1,
            ),
            # Flux schnell runs at cfg 1: the negative conditioning has no effect.
            "6": _node("CLIPTextEncode", "Positive Prompt", text="", clip=["4", 0]),
            "7": _node("CLIPTextEncode", "Negative Prompt (unused)", text="", clip=["4", 0]),
            "3": sampler,
            "8": decode,
            "9": save,
        }
    if name in NEEDS_IMAGE:
        sampler["inputs"]["denoise"] = _DENOISE[name]
        graph = {
            "4": _node("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name=values["model"]),
            "10": _node("LoadImage", "Load Image", image=""),
            "11": _node("VAEEncode", "VAE Encode", pixels=["10", 0], vae=["4", 2]),
            # The batch: one encoded input, repeated (each copy gets its own noise).
            "5": _node("RepeatLatentBatch", "Repeat Latent Batch", samples=["11", 0], amount=1),
            "6": _node("CLIPTextEncode", "Positive Prompt", text="", clip=["4", 1]),
            "7": _node("CLIPTextEncode", "Negative Prompt", text="", clip=["4", 1]),
            "3": sampler,
            "8": decode,
            "9": save,
        }
        if name == "inpaint":
            graph["12"] = _node("LoadImageMask", "Load Mask", image="", channel="alpha")
            graph["13"] = _node(
                "SetLatentNoiseMask", "Set Latent Noise Mask", samples=["11", 0], mask=["12", 0]
            )
            graph["5"]["inputs"]["samples"] = ["13", 0]
        return graph
    raise ValueError(f"unknown template {name!r}")

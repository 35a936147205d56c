"""The built-in text-to-image graphs, in ComfyUI's API format."""

from __future__ import annotations

from typing import Any

__all__ = ["TEMPLATES", "template_graph"]

TEMPLATES = ("checkpoint", "flux-schnell")

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
}


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
    raise ValueError(f"unknown template {name!r}")

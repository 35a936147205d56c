"""The inputs of the Replicate models imagen knows by name, from their API pages.

``imagen generate --opt`` is checked against them (a misspelt option is refused before
anything is sent), and so is ``inputs:`` in the slice: Replicate drops an input a model
does not have without a word. Any other model takes options free-form; ``imagen config
check --online`` reads its inputs from its version's schema.
"""

from __future__ import annotations

__all__ = ["MODEL_INPUTS"]

_FLUX_COMMON = {
    "prompt": "the prompt (imagen sends the request's)",
    "aspect_ratio": "aspect ratio (imagen picks the nearest to --size)",
    "num_outputs": "images per prediction, 1-4 (imagen sends -n)",
    "seed": "seed (imagen sends the request's)",
    "output_format": "webp, jpg or png",
    "output_quality": "0-100, for webp and jpg",
    "go_fast": "faster fp8 inference (true by default)",
    "megapixels": '"1" or "0.25"',
    "disable_safety_checker": "turn the safety checker off",
}
_KONTEXT = {
    "prompt": "the edit to make, or the picture without an image (imagen sends the request's)",
    "input_image": "the image to edit (imagen uploads --image)",
    "aspect_ratio": "match_input_image (imagen's default with an image) or a ratio",
    "seed": "seed (imagen sends the request's)",
    "prompt_upsampling": "let the model rewrite the prompt",
    "safety_tolerance": "0 (strictest) to 6; at most 2 with an input image",
    "output_format": "jpg or png",
}
MODEL_INPUTS: dict[str, dict[str, str]] = {
    "black-forest-labs/flux-schnell": {
        **_FLUX_COMMON,
        "num_inference_steps": "steps, 1-4 (imagen sends --steps)",
    },
    "black-forest-labs/flux-dev": {
        **_FLUX_COMMON,
        "num_inference_steps": "steps, 1-50 (imagen sends --steps)",
        "guidance": "guidance, 0-10 (3 by default)",
        "image": "an image to start from (imagen uploads --image)",
        "prompt_strength": "how far to move from the image, 0-1 (imagen sends --strength)",
    },
    "black-forest-labs/flux-1.1-pro": {
        "prompt": "the prompt (imagen sends the request's)",
        "aspect_ratio": "aspect ratio, or custom with width and height",
        "width": "256-1440, with aspect_ratio custom",
        "height": "256-1440, with aspect_ratio custom",
        "seed": "seed (imagen sends the request's)",
        "safety_tolerance": "1 (strictest) to 6",
        "prompt_upsampling": "let the model rewrite the prompt",
        "output_format": "webp, jpg or png",
        "output_quality": "0-100, for webp and jpg",
        "image_prompt": "an image to guide the composition (imagen uploads --reference)",
    },
    "stability-ai/sdxl": {
        "prompt": "the prompt (imagen sends the request's)",
        "negative_prompt": "what to keep out (imagen sends --negative)",
        "width": "width (imagen sends --size)",
        "height": "height (imagen sends --size)",
        "num_outputs": "images per prediction, 1-4 (imagen sends -n)",
        "num_inference_steps": "steps, 1-500 (imagen sends --steps)",
        "guidance_scale": "classifier-free guidance, 1-50 (7.5 by default)",
        "scheduler": "DDIM, DPMSolverMultistep, HeunDiscrete, KarrasDPM, K_EULER_ANCESTRAL, "
        "K_EULER or PNDM",
        "seed": "seed (imagen sends the request's)",
        "refine": "no_refiner, expert_ensemble_refiner or base_image_refiner",
        "high_noise_frac": "the share of steps the expert refiner takes",
        "refine_steps": "steps of the base image refiner",
        "apply_watermark": "watermark the image (true by default)",
        "lora_scale": "LoRA strength, for fine-tuned versions",
        "prompt_strength": "how far to move from the image, 0-1 (imagen sends --strength)",
        "image": "an image to start from or inpaint (imagen uploads --image)",
        "mask": "white where to paint, black to keep (imagen uploads --mask)",
        "disable_safety_checker": "turn the safety checker off",
    },
    "black-forest-labs/flux-kontext-pro": _KONTEXT,
    "black-forest-labs/flux-kontext-max": _KONTEXT,
    "black-forest-labs/flux-kontext-dev": {
        "prompt": "the edit to make (imagen sends the request's)",
        "input_image": "the image to edit, required (imagen uploads --image)",
        "aspect_ratio": "match_input_image (imagen's default with an image) or a ratio",
        "num_inference_steps": "steps, 4-50 (imagen sends --steps)",
        "guidance": "guidance, 0-10 (2.5 by default)",
        "seed": "seed (imagen sends the request's)",
        "output_format": "webp, jpg or png",
        "output_quality": "0-100, for webp and jpg",
        "go_fast": "faster inference (true by default)",
        "disable_safety_checker": "turn the safety checker off",
    },
    "black-forest-labs/flux-fill-pro": {
        "prompt": "what to paint where the mask is white (imagen sends the request's)",
        "image": "the image to inpaint, required (imagen uploads --image)",
        "mask": "white where to paint, black to keep (imagen uploads --mask)",
        "steps": "steps, 15-50 (imagen sends --steps)",
        "guidance": "guidance, 1.5-100 (60 by default)",
        "outpaint": "None, Zoom out 1.5x, Zoom out 2x, Make square, Left outpaint, …",
        "seed": "seed (imagen sends the request's)",
        "safety_tolerance": "1 (strictest) to 6",
        "prompt_upsampling": "let the model rewrite the prompt",
        "output_format": "jpg or png",
    },
    "black-forest-labs/flux-fill-dev": {
        **_FLUX_COMMON,
        "image": "the image to inpaint, required (imagen uploads --image)",
        "mask": "white where to paint, black to keep (imagen uploads --mask)",
        "num_inference_steps": "steps, 1-50 (imagen sends --steps)",
        "guidance": "guidance, 0-100 (30 by default)",
        "lora_weights": "a LoRA to load",
        "lora_scale": "LoRA strength",
    },
    "black-forest-labs/flux-redux-dev": {
        **{key: text for key, text in _FLUX_COMMON.items() if key != "prompt"},
        "redux_image": "the image to make variations of, required (imagen uploads --reference)",
        "num_inference_steps": "steps, 1-50 (imagen sends --steps)",
        "guidance": "guidance, 0-10 (3 by default)",
    },
    "black-forest-labs/flux-redux-schnell": {
        **{key: text for key, text in _FLUX_COMMON.items() if key != "prompt"},
        "redux_image": "the image to make variations of, required (imagen uploads --reference)",
        "num_inference_steps": "steps, 1-4 (imagen sends --steps)",
    },
}
"""The inputs of the models imagen knows by name (from their Replicate API pages): the
options a request may set for them. Any other model takes options free-form."""

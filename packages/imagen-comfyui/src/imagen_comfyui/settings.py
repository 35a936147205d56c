"""The ``comfyui`` config slice: every key, its default, and its validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagen import BackendConfig
from imagen.config import Setting
from imagen.retry import RETRY_SETTINGS, RetryPolicy, read_policy
from imagen_comfyui.templates import MAPPINGS, TEMPLATES, template_graph
from imagen_comfyui.workflow import Workflow, WorkflowError, load_graph

__all__ = ["SLICE", "ComfyUISettings", "read_settings"]

SLICE: dict[str, Setting] = {
    "base_url": Setting(str, None, "ComfyUI's address, such as `http://gpu-box:8188` (required)"),
    "headers": Setting(dict, None, "extra HTTP headers for every request (a reverse proxy's)"),
    "token_env": Setting(
        str, None, "environment variable holding a bearer token, sent as `Authorization: Bearer …`"
    ),
    "template": Setting(
        str,
        "checkpoint",
        "built-in graph: `checkpoint` (SD 1.5/SDXL checkpoint), `flux-schnell`, "
        "`img2img` (a checkpoint starting from `--image`, `--strength` its denoise) or "
        "`inpaint` (a checkpoint repainting where `--mask` says); not with `workflow`",
    ),
    "model": Setting(
        str,
        None,
        "checkpoint (or, for flux-schnell, diffusion model) file "
        "name on the server; required with a template",
    ),
    "default_steps": Setting(
        int, None, "steps when the request gives none (template: 25; flux-schnell: 4)"
    ),
    "sampler": Setting(str, None, "sampler name (template: `euler`)"),
    "scheduler": Setting(str, None, "scheduler (checkpoint: `normal`; flux-schnell: `simple`)"),
    "cfg": Setting(float, None, "classifier-free guidance (checkpoint: 7.0; flux-schnell: 1.0)"),
    "width": Setting(int, 1024, "width when the request gives none (text-to-image templates)"),
    "height": Setting(int, 1024, "height when the request gives none (text-to-image templates)"),
    "clip_l": Setting(str, "clip_l.safetensors", "flux-schnell: the CLIP-L text encoder file"),
    "t5xxl": Setting(str, "t5xxl_fp8_e4m3fn.safetensors", "flux-schnell: the T5-XXL encoder file"),
    "vae": Setting(str, "ae.safetensors", "flux-schnell: the VAE file"),
    "workflow": Setting(
        str,
        None,
        'path to your own workflow exported with "Export (API)", relative to imagen.yaml',
    ),
    "inputs": Setting(
        dict,
        None,
        "with `workflow`: which node inputs take each request field, "
        "as `NODE.input` (node id or title), or a list of them; fields: prompt, "
        "negative_prompt, seed, steps, width, height, count (unmapped ones are "
        "detected), and image, mask (a LoadImage's or LoadImageMask's `image`) and "
        "strength (a sampler's `denoise`), taken only where mapped",
    ),
    "connect_timeout_s": Setting(float, 10.0, "seconds to wait for a connection"),
    "http_timeout_s": Setting(float, 60.0, "seconds to wait for one HTTP answer"),
    "silence_s": Setting(
        float,
        30.0,
        "seconds of websocket silence before checking the run "
        "through /history and /queue (and reconnecting)",
    ),
    "unreachable_s": Setting(
        float,
        30.0,
        "how long a run goes on trying a server that stopped answering (a ComfyUI restart "
        "takes about 10 s) before it fails as transient; the run may still finish there, "
        "and `imagen resume` follows it",
    ),
    "idle_timeout_s": Setting(
        float,
        1800.0,
        "fail a run that shows no sign of life (no "
        "event, no change in the queue) for this long; a run that keeps "
        "reporting progress is never cut off",
    ),
    "price_per_second": Setting(float, None, "USD per second of execution, for cost records"),
    "price_per_image": Setting(float, None, "USD per image, for cost records"),
    **RETRY_SETTINGS,
}
_TEMPLATE_DEFAULTS = {
    "checkpoint": {"default_steps": 25, "sampler": "euler", "scheduler": "normal", "cfg": 7.0},
    "flux-schnell": {"default_steps": 4, "sampler": "euler", "scheduler": "simple", "cfg": 1.0},
    "img2img": {"default_steps": 25, "sampler": "euler", "scheduler": "normal", "cfg": 7.0},
    "inpaint": {"default_steps": 25, "sampler": "euler", "scheduler": "normal", "cfg": 7.0},
}
_TEMPLATE_ONLY = (
    "template",
    "model",
    "default_steps",
    "sampler",
    "scheduler",
    "cfg",
    "clip_l",
    "t5xxl",
    "vae",
)


@dataclass(frozen=True)
class ComfyUISettings:
    """A validated slice."""

    base_url: str
    headers: dict[str, str]
    workflow: Workflow
    template: str | None
    model: str | None
    sampler: str | None
    connect_timeout_s: float
    http_timeout_s: float
    silence_s: float
    unreachable_s: float
    idle_timeout_s: float
    price_per_second: float | None
    price_per_image: float | None
    retry: RetryPolicy


def _value(config: BackendConfig, key: str) -> Any:
    setting = SLICE[key]
    kind = setting.kind if isinstance(setting.kind, type) else str
    return config.get(key, kind, setting.default)


def _positive(config: BackendConfig, key: str) -> float | None:
    value = _value(config, key)
    if value is not None and value <= 0:
        raise config.error(f"must be more than 0, not {value}", key)
    return value


def read_settings(config: BackendConfig) -> ComfyUISettings:
    """Validate the slice; every error names its key."""
    config.check_keys(SLICE)
    base_url = config.require("base_url", str).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise config.error(f"must be an http:// or https:// URL, not {base_url!r}", "base_url")
    headers = _value(config, "headers") or {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise config.error("must map header names to string values", "headers")
    headers = dict(headers)
    token = config.secret("token_env") if "token_env" in config.settings else None
    if token:
        headers["Authorization"] = f"Bearer {token}"

    try:
        workflow, template, model, sampler = _workflow(config)
    except WorkflowError as exc:
        raise config.error(str(exc), exc.key) from None
    return ComfyUISettings(
        base_url=base_url,
        headers=headers,
        workflow=workflow,
        template=template,
        model=model,
        sampler=sampler,
        connect_timeout_s=_positive(config, "connect_timeout_s"),
        http_timeout_s=_positive(config, "http_timeout_s"),
        silence_s=_positive(config, "silence_s"),
        unreachable_s=_positive(config, "unreachable_s"),
        idle_timeout_s=_positive(config, "idle_timeout_s"),
        price_per_second=_value(config, "price_per_second"),
        price_per_image=_value(config, "price_per_image"),
        retry=read_policy(config),
    )


def _workflow(config: BackendConfig) -> tuple[Workflow, str | None, str | None, str | None]:
    if config.get("workflow", str) is not None:
        for key in _TEMPLATE_ONLY:
            if key in config.settings:
                raise WorkflowError(
                    "applies to the built-in templates, not to `workflow:`; "
                    "set it in the workflow itself",
                    key,
                )
        path = config.path("workflow")
        assert path is not None
        graph = load_graph(path, "workflow")
        return Workflow.build(graph, _value(config, "inputs"), str(path)), None, None, None
    if "inputs" in config.settings:
        raise WorkflowError(
            "maps the inputs of your own `workflow:`; the templates map theirs", "inputs"
        )
    name = config.choice("template", TEMPLATES, "checkpoint") or "checkpoint"
    model = config.require("model", str)
    defaults = _TEMPLATE_DEFAULTS[name]
    values = {
        "model": model,
        "steps": _value(config, "default_steps") or defaults["default_steps"],
        "sampler": _value(config, "sampler") or defaults["sampler"],
        "scheduler": _value(config, "scheduler") or defaults["scheduler"],
        "cfg": _value(config, "cfg") if _value(config, "cfg") is not None else defaults["cfg"],
        "width": _value(config, "width"),
        "height": _value(config, "height"),
        "clip_l": _value(config, "clip_l"),
        "t5xxl": _value(config, "t5xxl"),
        "vae": _value(config, "vae"),
    }
    for key in ("default_steps", "width", "height"):
        if _value(config, key) is not None and _value(config, key) < 1:
            raise WorkflowError(f"must be 1 or more, not {_value(config, key)}", key)
    graph = template_graph(name, values)
    return (
        Workflow.build(graph, MAPPINGS[name], f"template {name}", complete=True),
        name,
        model,
        values["sampler"],
    )

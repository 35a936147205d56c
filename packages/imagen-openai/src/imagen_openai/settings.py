"""The ``openai`` config slice: every key, its default, and its validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagen import BackendConfig
from imagen.config import Setting
from imagen.retry import RETRY_SETTINGS, RetryPolicy, read_policy
from imagen_openai.models import DEFAULT_MODEL, RETIRED, is_openai_model

__all__ = ["CHOICES", "SLICE", "OpenAISettings", "read_settings"]

CHOICES: dict[str, tuple[str, ...]] = {
    "quality": ("low", "medium", "high", "auto", "xhigh", "max"),
    "background": ("transparent", "opaque", "auto"),
    "output_format": ("png", "webp", "jpeg"),
    "moderation": ("low", "auto"),
}
SLICE: dict[str, Setting] = {
    "model": Setting(
        str,
        DEFAULT_MODEL,
        "a gpt-image model the openai SDK lists (retired ones are refused); with `base_url`, "
        "any model of that server",
    ),
    "api_key_env": Setting(str, "OPENAI_API_KEY", "environment variable holding the API key"),
    "base_url": Setting(
        str, None, "API address ending in /v1, for compatible servers, proxies and tests"
    ),
    "organization": Setting(str, None, "OpenAI organization id"),
    "project": Setting(str, None, "OpenAI project id"),
    "quality": Setting(str, None, "low, medium, high or auto (xhigh and max on the 2.5 models)"),
    "background": Setting(str, None, "transparent, opaque or auto"),
    "output_format": Setting(str, None, "png, webp or jpeg"),
    "output_compression": Setting(int, None, "0-100, for webp and jpeg"),
    "moderation": Setting(str, None, "low or auto"),
    "timeout_s": Setting(
        float, 600.0, "seconds to wait for a generation (high quality can take minutes)"
    ),
    "price_per_image": Setting(float, None, "USD per image, overriding the price table"),
    **RETRY_SETTINGS,
}


@dataclass(frozen=True)
class OpenAISettings:
    model: str
    api_key: str
    api_key_env: str
    base_url: str | None
    organization: str | None
    project: str | None
    defaults: dict[str, Any]
    timeout_s: float
    price_per_image: float | None
    retry: RetryPolicy


def read_settings(config: BackendConfig, known_models: tuple[str, ...]) -> OpenAISettings:
    """Validate the slice against the models the installed SDK knows."""
    config.check_keys(SLICE)
    model = config.get("model", str, DEFAULT_MODEL)
    if model in RETIRED:
        raise config.error(f"{model} {RETIRED[model]}; use {DEFAULT_MODEL} or gpt-image-2", "model")
    # OpenAI's names are checked against what the SDK lists; any other name is a model of the
    # compatible server at base_url (LocalAI, imagen serve, ...), which knows its own.
    theirs = not is_openai_model(model) and config.get("base_url", str) is not None
    if not theirs and (
        model not in known_models or not model.startswith(("gpt-image", "chatgpt-image"))
    ):
        current = ", ".join(m for m in known_models if m not in RETIRED)
        hint = "" if is_openai_model(model) else "; another server's model needs its base_url"
        raise config.error(f"unknown image model {model!r} (current: {current}){hint}", "model")
    api_key_env = config.get("api_key_env", str, "OPENAI_API_KEY")
    api_key = config.credential("api_key_env", "OPENAI_API_KEY")
    base_url = config.get("base_url", str)
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise config.error(f"must be an http:// or https:// URL, not {base_url!r}", "base_url")
    defaults: dict[str, Any] = {}
    for key, allowed in CHOICES.items():
        value = config.choice(key, allowed)
        if value is not None:
            defaults[key] = value
    compression = config.get("output_compression", int)
    if compression is not None:
        if not 0 <= compression <= 100:
            raise config.error(
                f"must be between 0 and 100, not {compression}", "output_compression"
            )
        defaults["output_compression"] = compression
    timeout = config.get("timeout_s", float, 600.0)
    if timeout <= 0:
        raise config.error(f"must be more than 0, not {timeout}", "timeout_s")
    return OpenAISettings(
        model=model,
        api_key=api_key,
        api_key_env=api_key_env,
        base_url=base_url,
        organization=config.get("organization", str),
        project=config.get("project", str),
        defaults=defaults,
        timeout_s=timeout,
        price_per_image=config.get("price_per_image", float),
        retry=read_policy(config),
    )

"""The ``replicate`` config slice: every key, its default, and its validation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from imagen import BackendConfig
from imagen.config import Setting
from imagen.retry import RETRY_SETTINGS, RetryPolicy, read_policy
from imagen_replicate.mapping import FAMILIES, FIELDS, ROLES, Family, family_for
from imagen_replicate.model_inputs import MODEL_INPUTS
from imagen_replicate.pricing import Price, price_for

__all__ = ["SLICE", "ReplicateSettings", "read_settings"]

SLICE: dict[str, Setting] = {
    "model": Setting(
        str, None, "`owner/name` (official models) or `owner/name:version` (required)"
    ),
    "token_env": Setting(str, "REPLICATE_API_TOKEN", "environment variable holding the API token"),
    "base_url": Setting(str, None, "API address, for proxies and tests (default: Replicate's)"),
    "family": Setting(
        str,
        None,
        "input mapping: "
        + ", ".join(f"`{name}`" for name in FAMILIES)
        + " (default: guessed from the model's name)",
    ),
    "inputs": Setting(
        dict,
        None,
        "override input names: request field (prompt, negative_prompt, seed, steps, count, "
        "width, height), input image role (image, reference, mask) or strength → model input "
        "name, or null to leave it out",
    ),
    "input": Setting(
        dict,
        None,
        "fixed model inputs sent with every prediction, such as "
        "`output_format: png` or `go_fast: false`",
    ),
    "file_encoding": Setting(
        str,
        "url",
        "how input images are sent: `url` (uploaded to `/v1/files`, streamed) or `base64` "
        "(inline `data:` URLs, held in memory: for small files)",
    ),
    "poll_interval_s": Setting(float, 1.0, "seconds between status checks"),
    "timeout_s": Setting(
        float, 1800.0, "cancel and fail a prediction still running after this long"
    ),
    "http_timeout_s": Setting(float, 60.0, "seconds to wait for one HTTP answer"),
    "price_per_image": Setting(float, None, "USD per output image (overrides the price table)"),
    "price_per_second": Setting(
        float, None, "USD per second of predict time (overrides the price table)"
    ),
    **RETRY_SETTINGS,
}
_MODEL = re.compile(r"^[\w.-]+/[\w.-]+(:[0-9a-zA-Z]+)?$")
_MAPPED = (*FIELDS, *ROLES, "strength")


@dataclass(frozen=True)
class ReplicateSettings:
    model: str
    owner_name: str
    version: str | None
    token: str
    token_env: str
    base_url: str | None
    family: Family
    overrides: dict[str, str | None]
    file_encoding: str
    fixed: dict[str, Any]
    poll_interval_s: float
    timeout_s: float
    http_timeout_s: float
    price: Price | None
    retry: RetryPolicy

    @property
    def names(self) -> dict[str, str | None]:
        """Request field or input role → model input: the family's, overridden by ``inputs:``."""
        return {**self.family.inputs, **self.overrides}


def _positive(config: BackendConfig, key: str) -> float:
    value = config.get(key, float, SLICE[key].default)
    if value <= 0:
        raise config.error(f"must be more than 0, not {value}", key)
    return value


def read_settings(config: BackendConfig) -> ReplicateSettings:
    """Validate the slice; every error names its key."""
    config.check_keys(SLICE)
    model = config.require("model", str)
    if not _MODEL.match(model):
        raise config.error(
            f"must look like owner/name or owner/name:version, not {model!r}", "model"
        )
    owner_name, _, version = model.partition(":")
    token_env = config.get("token_env", str, "REPLICATE_API_TOKEN")
    token = config.credential("token_env", "REPLICATE_API_TOKEN")
    base_url = config.get("base_url", str)
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise config.error(f"must be an http:// or https:// URL, not {base_url!r}", "base_url")
    family_name = config.choice("family", FAMILIES, family_for(model))
    overrides = config.get("inputs", dict) or {}
    known = MODEL_INPUTS.get(owner_name)
    for key, value in overrides.items():
        if key not in _MAPPED:
            raise config.error(
                f"unknown field {key!r} (fields: {', '.join(_MAPPED)})", f"inputs.{key}"
            )
        if value is not None and not isinstance(value, str):
            raise config.error("must be a model input name or null", f"inputs.{key}")
        if value is not None and known is not None and value not in known:
            # Replicate drops an input a model does not have without a word: say it here.
            raise config.error(
                f"{owner_name} has no input {value!r} (its inputs: {', '.join(known)})",
                f"inputs.{key}",
            )
    per_image = config.get("price_per_image", float)
    per_second = config.get("price_per_second", float)
    return ReplicateSettings(
        model=model,
        owner_name=owner_name,
        version=version or None,
        token=token,
        token_env=token_env,
        base_url=base_url,
        family=FAMILIES[family_name or "sdxl"],
        overrides=dict(overrides),
        file_encoding=config.choice("file_encoding", ("url", "base64"), "url") or "url",
        fixed=dict(config.get("input", dict) or {}),
        poll_interval_s=_positive(config, "poll_interval_s"),
        timeout_s=_positive(config, "timeout_s"),
        http_timeout_s=_positive(config, "http_timeout_s"),
        price=price_for(model, per_image, per_second),
        retry=read_policy(config),
    )

"""The ``cloud:`` section, checked."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imagen import secrets
from imagen.naming import NamingTemplate
from imagen.retry import DEFAULT_POLICY, RetryPolicy
from imagen.sections import Section, SectionData, Setting

if TYPE_CHECKING:
    from imagen.config import Config

__all__ = ["CLOUD", "CLOUD_SECTION", "URL_KINDS", "CloudSettings", "key_role", "read_cloud"]

URL_KINDS = ("signed", "public", "none")
CLOUD: dict[str, Setting] = {
    "enabled": Setting(
        bool, True, "upload each saved image (false keeps the section, syncs nothing)"
    ),
    "url": Setting(str, None, "the Supabase project URL, `https://PROJECT.supabase.co` (required)"),
    "key_env": Setting(
        str, "SUPABASE_SERVICE_ROLE_KEY", "the environment variable holding the service key"
    ),
    "bucket": Setting(str, None, "the Storage bucket (required)"),
    "path": Setting(
        str,
        "{owner}/{date:%Y/%m}/{date}-{slug}-{seed}.{ext}",
        "object path template: the `output.naming` placeholders plus `{owner}` "
        "(the job's owner in the worker, `local` from the CLI)",
    ),
    "url_kind": Setting(
        str, "signed", "the URL kept in the sidecar: `signed`, `public` (a public bucket) or `none`"
    ),
    "signed_url_ttl_s": Setting(
        int, 7 * 24 * 3600, "how long a signed URL stays valid, in seconds"
    ),
    "record_images": Setting(
        bool, True, "insert an `imagen.images` row per image (the worker records its own)"
    ),
    "timeout_s": Setting(
        (int, float), 60.0, "seconds to wait for Storage or the REST API to answer"
    ),
    "retry_attempts": Setting(
        int, DEFAULT_POLICY.max_attempts, "attempts in all for an upload that fails transiently"
    ),
    "retry_max_s": Setting(
        (int, float), DEFAULT_POLICY.max_total_s, "no upload retry starts after this many seconds"
    ),
}


@dataclass(frozen=True)
class CloudSettings:
    """A checked ``cloud:`` section, with the service key read from the environment."""

    url: str
    key: str
    key_env: str
    bucket: str
    path: NamingTemplate
    url_kind: str
    signed_url_ttl_s: int
    record_images: bool
    timeout_s: float
    retry: RetryPolicy


def _parse(data: SectionData) -> dict[str, Any]:
    """The checks that need no credential: made whenever the file is loaded."""
    values = data.values
    if not data.present:
        return values
    if values["enabled"]:
        for required in ("url", "bucket"):
            if not values[required]:
                raise data.error("is required", required)
    if values["url"] is not None and not re.match(r"^https?://[^/\s]+", values["url"]):
        raise data.error(f"must be an http:// or https:// URL, not {values['url']!r}", "url")
    if values["url_kind"] not in URL_KINDS:
        raise data.error(
            f"must be one of {', '.join(URL_KINDS)}, not {values['url_kind']!r}", "url_kind"
        )
    for key in ("signed_url_ttl_s", "timeout_s"):
        if values[key] <= 0:
            raise data.error("must be positive", key)
    try:
        NamingTemplate(values["path"], extra=("owner",))
    except ValueError as exc:
        raise data.error(str(exc), "path") from None
    return values


CLOUD_SECTION = Section(
    "cloud", "uploading images to Supabase Storage (the cloud sync step)", CLOUD, parse=_parse
)


def read_cloud(config: Config, environ: Mapping[str, str] = os.environ) -> CloudSettings | None:
    """The ``cloud:`` settings; None when there is no section or it is not enabled.

    The section was checked when the file was loaded; this reads the service key.

    :raises ConfigError: naming the file, line and key of the unset variable or wrong key.
    """
    if "cloud" not in config.sections:
        return None
    values = config.section("cloud")
    if not values["enabled"]:
        return None
    key = environ.get(values["key_env"])
    if not key:
        raise config.section_error(
            "cloud", f"environment variable {values['key_env']} is not set", "key_env"
        )
    secrets.register(key)
    role = key_role(key)
    if role is not None and role != "service_role":
        raise config.section_error(
            "cloud",
            f"{values['key_env']} holds the {role} key; cloud sync needs the service_role key "
            "(Supabase: Project Settings, API keys)",
            "key_env",
        )
    return CloudSettings(
        url=values["url"].rstrip("/"),
        key=key,
        key_env=values["key_env"],
        bucket=values["bucket"],
        path=NamingTemplate(values["path"], extra=("owner",)),
        url_kind=values["url_kind"],
        signed_url_ttl_s=values["signed_url_ttl_s"],
        record_images=values["record_images"],
        timeout_s=float(values["timeout_s"]),
        retry=RetryPolicy(
            max_attempts=max(1, values["retry_attempts"]), max_total_s=float(values["retry_max_s"])
        ),
    )


def key_role(key: str) -> str | None:
    """The role a Supabase key acts as, when the key says so; None when it does not.

    A legacy key is a JWT whose payload names its ``role`` (read here, not verified: only
    the server can). The newer keys are opaque, except that a publishable one is plainly
    the anon role's.
    """
    if key.startswith("sb_publishable_"):
        return "anon"
    parts = key.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    role = payload.get("role") if isinstance(payload, dict) else None
    return role if isinstance(role, str) else None

"""The door: a job is checked before it is queued, so a bad one never reaches a worker.

``imagen jobs submit``, ``imagen serve`` and anything else that queues jobs call
:func:`check_job`; the worker calls :func:`check_fields` again on every row it claims
(a row may come from anywhere that can insert). Both raise :class:`JobRejected`, a
:class:`~imagen.errors.RequestError` naming the field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from imagen.errors import ConfigError, RequestError
from imagen.options import check_options
from imagen_worker.limits import (
    MAX_COUNT,
    MAX_NAME,
    MAX_OPTIONS_BYTES,
    MAX_PROMPT,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    json_problem,
)

if TYPE_CHECKING:
    from imagen.config import Config
    from imagen.pipeline import BackendPool

__all__ = ["JobRejected", "check_fields", "check_job", "constraint_field"]

log = logging.getLogger("imagen")


class JobRejected(RequestError):
    """A job that cannot be queued (or run) as asked.

    :param field: the job field at fault (``prompt``, ``options``, ``backend`` …).
    :param code: a short machine-readable reason (``unknown_backend``, ``invalid_value``).
    """

    def __init__(
        self, field: str, message: str, code: str = "invalid_value", *, whole: bool = False
    ) -> None:
        super().__init__(message if whole else f"{field}: {message}")
        self.field = field
        self.reason = message
        self.code = code


def check_fields(fields: Mapping[str, Any], owner: str | None = None) -> None:
    """Check a job's fields against the queue's bounds (:mod:`imagen_worker.limits`).

    Needs no config and no database: what any row must satisfy to become a request.

    :param owner: whose job it is, when known: input images in the cloud bucket must be
        in their folder (:mod:`imagen_worker.job_inputs`).
    """
    from imagen_worker.job_inputs import check_refs, check_strength

    if fields.get("inputs") is not None:
        check_refs(fields["inputs"], owner)
    check_strength(fields.get("strength"))
    _text(fields, "prompt", required=True)
    _text(fields, "negative_prompt")
    for name in ("backend", "style"):
        value = fields.get(name)
        if value is not None:
            _text(fields, name, limit=MAX_NAME)
            if not value.strip():
                raise JobRejected(name, "must not be empty")
    for name, high in (("width", MAX_SIDE), ("height", MAX_SIDE), ("steps", MAX_STEPS)):
        _whole(fields, name, 1, high)
    count = _whole(fields, "count", 1, MAX_COUNT)
    images = count if count is not None else 1
    seed = _whole(fields, "seed", 0, MAX_SEED)
    if seed is not None and seed + images - 1 > MAX_SEED:
        raise JobRejected(
            "seed",
            f"image {images} of the job would use seed {seed + images - 1}, beyond {MAX_SEED} "
            "(image i uses seed + i - 1)",
        )
    options = fields.get("options")
    if options is None:
        return
    if not isinstance(options, dict):
        raise JobRejected("options", "must be a JSON object")
    problem = json_problem(options)
    if problem:
        where, why = problem
        raise JobRejected(f"options.{where}" if where else "options", why)
    size = len(json.dumps(options, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_OPTIONS_BYTES:
        raise JobRejected("options", f"{size} bytes of JSON, more than {MAX_OPTIONS_BYTES}")


def check_job(
    config: Config,
    fields: Mapping[str, Any],
    *,
    pool: BackendPool | None = None,
    max_images: int | None = None,
    owner: str | None = None,
    inputs: tuple[Any, ...] = (),
) -> None:
    """Check a job before it is queued: bounds, names, and what its backend can make.

    :param pool: built backends whose :meth:`~imagen.Backend.check` judges the request
        (size bounds, options); None skips that part. A backend that cannot be built
        here (its credential lives only on the workers' hosts) is skipped too: the worker
        is the last judge, and fails the job with the backend's own reason.
    :param max_images: the most images one job may ask for here (``serve.max_images``).
    :param owner: whose job it is (see :func:`check_fields`).
    :param inputs: the job's input images as checked files (``imagen serve`` has them),
        for the backend to judge whether it takes them; the worker judges references.
    """
    from imagen.request import Request
    from imagen.styles import apply_style

    check_fields(fields, owner)
    count = fields.get("count") or 1
    if max_images is not None and count > max_images:
        raise JobRejected("count", f"at most {max_images} images a job, not {count}")
    backend = fields.get("backend")
    if backend is not None and backend not in config.backends:
        known = ", ".join(config.backends)
        raise JobRejected(
            "backend", f'no backend instance "{backend}" (configured: {known})', "unknown_backend"
        )
    style = fields.get("style")
    if style is not None and style not in config.styles:
        known = ", ".join(config.styles) or "none are configured"
        raise JobRejected("style", f'unknown style "{style}" (known: {known})', "unknown_style")
    request = Request(
        prompt=fields["prompt"],
        negative_prompt=fields.get("negative_prompt") or "",
        width=fields.get("width"),
        height=fields.get("height"),
        steps=fields.get("steps"),
        seed=fields.get("seed"),
        style=style,
        count=count,
        options=fields.get("options") or {},
        inputs=inputs,
        strength=fields.get("strength"),
    )
    if pool is None:
        return
    try:
        instance = pool.get(backend)
    except ConfigError as exc:
        log.debug("not checking the job against its backend here: %s", exc)
        return
    final = apply_style(request, config.style(style) if style else None)
    refusal = instance.input_support().refusal(inputs)
    if refusal:
        message = f'backend "{instance.name}" {refusal}'
        raise JobRejected("inputs", message, "unsupported_input", whole=True)
    try:
        check_options(instance, final)
    except RequestError as exc:
        raise JobRejected("options", str(exc), "unknown_option", whole=True) from None
    try:
        instance.check(final)
    except RequestError as exc:
        message = f'backend "{instance.name}": {exc}'
        raise JobRejected(_field_of(str(exc)), message, whole=True) from None


def _field_of(message: str) -> str:
    for name in ("width", "height", "steps", "seed", "count", "negative_prompt", "prompt"):
        if message.startswith(name):
            return name
    return "options" if message.startswith("option") else "request"


# What each of the database's own checks (migrations 0001, 0003 and 0006) is about, for a
# refusal the database made that the checks above let through.
_CONSTRAINTS = {
    "jobs_prompt_check": "prompt",
    "jobs_prompt_limits": "prompt",
    "jobs_negative_prompt_limits": "negative_prompt",
    "jobs_names_limits": "backend",
    "jobs_size_limits": "size",
    "jobs_width_check": "size",
    "jobs_height_check": "size",
    "jobs_steps_check": "steps",
    "jobs_steps_limits": "steps",
    "jobs_seed_check": "seed",
    "jobs_seed_limits": "seed",
    "jobs_count_check": "count",
    "jobs_options_limits": "options",
    "jobs_max_attempts_check": "max_attempts",
    "jobs_inputs_limits": "inputs",
    "jobs_strength_limits": "strength",
    "jobs_attempts_limits": "max_attempts",
}


def constraint_field(constraint: str | None) -> str:
    """The job field a violated database constraint is about ("request" if unknown)."""
    return _CONSTRAINTS.get(constraint or "", "request")


def _text(
    fields: Mapping[str, Any], name: str, *, required: bool = False, limit: int = MAX_PROMPT
) -> None:
    value = fields.get(name)
    if value is None:
        if required:
            raise JobRejected(name, "is required")
        return
    if not isinstance(value, str):
        raise JobRejected(name, "must be text")
    if required and not value.strip():
        raise JobRejected(name, "must not be empty or only white space")
    if len(value) > limit:
        raise JobRejected(name, f"{len(value)} characters, more than {limit}")
    if "\x00" in value:
        raise JobRejected(name, "must not contain NUL (\\u0000) characters")


def _whole(fields: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobRejected(name, f"must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise JobRejected(name, f"must be between {low} and {high}, not {value}")
    return value

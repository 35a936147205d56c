"""The one pipeline that ``imagen generate`` and the worker both drive.

backend instance from config → style → seed → backend → each image and its sidecar
written → the ``imagen_image_saved`` steps → the usage record → the
``imagen_run_finished`` steps.

Other steps (cloud sync, preview) are plugins implementing those two hooks, so they plug
in without touching this module; where usage records go is a plugin's choice too.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagen import __version__, secrets
from imagen.backend import Backend
from imagen.config import Config
from imagen.context import Context
from imagen.errors import (
    BackendError,
    ConfigError,
    ImagenError,
    PermanentBackendError,
    RequestError,
)
from imagen.metadata import EXTENSIONS
from imagen.metadata.record import ImageFacts, build_record
from imagen.options import check_options
from imagen.output import SavedImage, write_image
from imagen.plugins import StepFailure, call_each
from imagen.registry import build_backend
from imagen.request import IGNORED_KEY, Request, Result
from imagen.styles import apply_style
from imagen.usage import UsageSink, usage_record, usage_sink
from imagen.usage.budget import read_budget

__all__ = ["BackendPool", "Outcome", "Run", "check_request", "choose_seed", "generate"]

log = logging.getLogger("imagen")
SEED_LIMIT = 2**32  # chosen seeds stay below this: every upstream accepts a 32-bit seed


@dataclass
class Run:
    """One generation as pipeline steps see it.

    :param request: what the backend is asked for (style applied, seed chosen).
    :param original: the request as given (before the style), with the chosen seed.
    :param labels: free-form facts from the entry point (``entry``: ``cli`` or ``worker``;
        the worker adds the job id and owner) for steps such as usage recording.
    """

    config: Config
    backend_name: str
    backend_type: str
    original: Request
    request: Request
    context: Context
    output_dir: Path
    started: datetime
    preview: bool
    labels: dict[str, Any] = field(default_factory=dict)
    usage: UsageSink | None = None
    reservation: Any = None  # what the usage sink holds against spending caps, if any
    keep_partial: bool = True


@dataclass
class Outcome:
    """What a successful run produced."""

    images: list[SavedImage]
    metadata: dict[str, Any]
    duration_s: float
    step_failures: list[StepFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ignored(self) -> list[str]:
        """The request fields the backend said it did not honour."""
        return list(self.metadata.get(IGNORED_KEY) or [])


class BackendPool:
    """Backend instances built on first use and kept for the process (the worker reuses them)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._built: dict[str, Backend] = {}

    def get(self, name: str | None = None) -> Backend:
        """The backend instance ``name`` (the default one when None)."""
        slice_ = self.config.backend(name)
        if slice_.name not in self._built:
            self._built[slice_.name] = build_backend(slice_)
        return self._built[slice_.name]

    def close(self) -> None:
        for backend in self._built.values():
            try:
                backend.close()
            except Exception:
                log.debug("closing backend %s failed", backend.name, exc_info=True)
        self._built.clear()


def choose_seed() -> int:
    """A fresh random seed, recorded so the image can be made again."""
    return random.SystemRandom().randrange(SEED_LIMIT)


def generate(
    config: Config,
    request: Request,
    *,
    backend: str | None = None,
    context: Context | None = None,
    output_dir: Path | None = None,
    preview: bool | None = None,
    pool: BackendPool | None = None,
    labels: dict[str, Any] | None = None,
    resume: str | None = None,
    usage: UsageSink | None = None,
    keep_partial: bool = True,
    styled: Request | None = None,
    started: datetime | None = None,
) -> Outcome:
    """Run the pipeline once: make ``request.count`` images and save them.

    :param request: the request as given; its ``style`` names a preset to apply.
    :param backend: the backend instance's name; the config's default when None.
    :param output_dir: overrides ``output.directory``.
    :param preview: overrides ``preview.enabled``.
    :param pool: built backends to reuse across runs.
    :param resume: the upstream run id of an earlier attempt: follow that run with the
        backend's ``resume`` instead of starting (and paying for) a new one. Ignored by a
        backend that cannot resume; ``run.labels["resume"]`` says what happened.
    :param usage: where the run's usage record goes; by default :func:`usage_sink`'s
        choice for ``config`` (none when ``usage.record`` is false).
    :param keep_partial: when the run fails after saving some of its images, keep them
        (the CLI: they were paid for) or remove them and their sidecars (the worker: a
        job's images are all recorded or none are kept).
    :param styled: with ``resume``: the request as the backend received it then (its style
        applied, the same seed as ``request``), so a style edited since changes nothing.
    :param started: with ``resume``: when the run was started, for file names and records.
    :raises ImagenError: config, request, backend and output errors, typed.
    """
    own_pool = pool is None
    pool = pool or BackendPool(config)
    context = context or Context()
    own_usage = usage is None
    try:
        usage = usage or usage_sink(config)
        instance = pool.get(backend)
        original = request if request.seed is not None else request.replace(seed=choose_seed())
        if styled is not None:
            final = styled
        else:
            style = config.style(original.style) if original.style else None
            final = apply_style(original, style)
        run = Run(
            config=config,
            backend_name=instance.name,
            backend_type=instance.config.type,
            original=original,
            request=final,
            context=context,
            output_dir=output_dir or config.output.directory,
            started=started or datetime.now(UTC),
            preview=config.preview.enabled if preview is None else preview,
            labels={"entry": "cli", **(labels or {})},
            usage=usage,
            keep_partial=keep_partial,
        )
        if resume is not None:
            run.labels["resume"] = "resumed" if instance.supports_resume else "not supported"
        return _execute(run, instance, resume if instance.supports_resume else None)
    finally:
        if own_pool:
            pool.close()
        if own_usage and usage is not None:
            usage.close()


def _call_backend(run: Run, backend: Backend, resume: str | None) -> Result:
    try:
        if resume is not None:
            run.context.report_run_id(resume)
            return backend.resume(resume, run.request, run.context)
        return backend.generate(run.request, run.context)
    except ImagenError as exc:
        if isinstance(exc, BackendError):
            exc.backend = exc.backend or run.backend_name
            exc.upstream_id = exc.upstream_id or run.context.run_id
        exc.message = secrets.redact(exc.message)
        raise
    except Exception as exc:  # an adapter bug or an untranslated SDK error
        message = secrets.redact(f"unexpected {type(exc).__name__}: {exc}")
        raise PermanentBackendError(
            message, backend=run.backend_name, upstream_id=run.context.run_id
        ) from exc


def check_request(backend: Backend, request: Request) -> None:
    """Every refusal of ``request`` that ``backend`` can make before it is called (and paid).

    Its input images, its options (:func:`~imagen.options.check_options`), then the
    backend's own :meth:`~imagen.Backend.check`. ``imagen generate --dry-run`` calls it too.

    :raises RequestError: naming the backend.
    """
    name = backend.name
    refusal = backend.input_support().refusal(request.inputs)
    if refusal is not None:
        raise RequestError(f'backend "{name}" {refusal}')
    try:
        check_options(backend, request)
        backend.check(request)
    except RequestError as exc:
        if not exc.message.startswith(f'backend "{name}"'):
            exc.message = f'backend "{name}": {exc.message}'
        exc.message = secrets.redact(exc.message)
        raise
    except ImagenError as exc:
        exc.message = secrets.redact(exc.message)
        raise
    except Exception as exc:  # an adapter bug
        message = secrets.redact(f"unexpected {type(exc).__name__} checking the request: {exc}")
        raise PermanentBackendError(message, backend=name) from exc


def _note_ignored_strength(request: Request, backend: Backend, result: Result) -> None:
    """A strength the backend does not take is listed with the fields it ignored."""
    if request.strength is None or backend.input_support().strength:
        return
    ignored = result.metadata.get(IGNORED_KEY)
    ignored = list(ignored) if isinstance(ignored, list | tuple) else []
    if "strength" not in ignored:
        result.metadata[IGNORED_KEY] = [*ignored, "strength"]


def _reserve(run: Run, backend: Backend) -> None:
    """Hold the run's estimated cost against the spending caps it counts against."""
    budget = read_budget(run.config)
    if budget is None:
        return
    caps = budget.caps_for(run.backend_name, run.labels.get("owner"))
    if not caps:
        return
    if run.usage is None:
        raise ConfigError("usage.budget needs usage records: usage.record is false")
    estimate = backend.estimate_cost(run.request) or 0.0
    run.reservation = run.usage.reserve(caps, usage_record(run, None, None), estimate)


def _execute(run: Run, backend: Backend, resume: str | None = None) -> Outcome:
    clock = time.perf_counter()
    outcome = None
    error: BaseException | None = None
    try:
        if resume is None:
            check_request(backend, run.request)
        _reserve(run, backend)
        with _call_backend(run, backend, resume) as result:
            duration = time.perf_counter() - clock
            _note_ignored_strength(run.request, backend, result)
            metadata = secrets.redact_data(result.metadata)
            outcome = Outcome([], metadata, duration)
            if len(result.images) != run.request.count:
                outcome.notes.append(
                    f"asked for {run.request.count} images, the backend returned "
                    f"{len(result.images)}"
                )
            for index in range(1, len(result.images) + 1):
                saved = _save(run, backend, result, index, duration)
                outcome.images.append(saved)
                outcome.notes.extend(saved.notes)
                outcome.step_failures += call_each("imagen_image_saved", image=saved, run=run)
        return outcome
    except BaseException as exc:
        error = exc
        for saved in outcome.images if outcome else []:
            if run.keep_partial:
                log.warning("saved before the failure: %s", saved.path)
            else:
                saved.remove()
        raise
    finally:
        done = outcome if error is None else None
        failures = _record_usage(run, done, error)
        failures += call_each("imagen_run_finished", run=run, outcome=done, error=error)
        if done is not None:
            done.step_failures += failures
        else:
            for failure in failures:
                log.warning("%s", failure)


def _record_usage(
    run: Run, outcome: Outcome | None, error: BaseException | None
) -> list[StepFailure]:
    if run.usage is None:
        return []
    record = usage_record(run, outcome, error)
    try:
        if run.reservation is not None:
            run.usage.settle(run.reservation, record)
        else:
            run.usage.record(record)
    except Exception as exc:  # noqa: BLE001 (a lost record must not lose the images)
        return [StepFailure("usage", "usage record", exc)]
    return []


def _save(run: Run, backend: Backend, result: Result, index: int, duration: float) -> SavedImage:
    image = result.images[index - 1]
    output = run.config.output
    relative = output.naming.render(
        when=run.started.astimezone(),
        prompt=run.original.prompt,
        seed=image.seed if image.seed is not None else run.request.seed,
        backend=run.backend_name,
        ext=EXTENSIONS.get(image.mime_type, "bin"),
        index=index,
    )
    target = run.output_dir / relative

    def record_for(width: int | None, height: int | None, mime_type: str) -> dict[str, Any]:
        facts = ImageFacts(
            index, image.seed, mime_type, width, height, {**result.metadata, **image.metadata}
        )
        return build_record(
            version=__version__,
            original=run.original,
            final=run.request,
            backend=run.backend_name,
            backend_type=run.backend_type,
            reproducible=backend.reproducible,
            image=facts,
            created=run.started,
            duration_s=duration,
        )

    return write_image(
        image.stream,
        image.mime_type,
        target,
        record_for,
        embed=output.embed_metadata,
        sidecar=output.write_metadata_json,
    )

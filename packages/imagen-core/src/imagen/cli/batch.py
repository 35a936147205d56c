"""``imagen generate --prompts FILE``: one run per line, several at once, each reported as saved.

Every line is a prompt (blank lines and lines starting with ``#`` are skipped); the other
flags apply to each. Runs share the backend instances and go up to ``--jobs`` at a time.
Each image's path is printed the moment it is saved (with ``--json``: one JSON object per
prompt, in the order they end); a prompt that fails is reported on stderr with its line and
the others go on. The exit code: 0 when every prompt made its images, 9 when some failed
(the others' images are saved), the first failure's own code when all failed.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imagen.cli import STEP_FAILED, fail
from imagen.errors import ImagenError

if TYPE_CHECKING:
    from imagen.config import Config
    from imagen.context import Context
    from imagen.output import SavedImage
    from imagen.pipeline import BackendPool, Outcome, Run
    from imagen.request import Request

__all__ = ["SOME_FAILED", "read_prompts", "run_batch"]

SOME_FAILED = 9
log = logging.getLogger("imagen")


@dataclass(frozen=True)
class Line:
    """One prompt of the file and where it was."""

    number: int
    prompt: str


def read_prompts(source: str) -> tuple[str, list[Line]]:
    """The prompts of ``source`` (a path, or ``-`` for standard input) and its display name."""
    if source == "-":
        name, text = "<stdin>", sys.stdin.read()
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            fail(f"{source}: no such file", 2)
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"{source}: cannot read it: {exc}", 2)
        name = source
    lines = [
        Line(number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        fail(f"{name}: no prompts in it (one a line; # starts a comment)", 2)
    return name, lines


class _Contexts:
    """Every run's context, cancelled together (what Ctrl-C reaches)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all: list[Context] = []
        self.cancelled = False

    def new(self) -> Context:
        from imagen.context import Context

        context = Context()
        with self._lock:
            self._all.append(context)
            if self.cancelled:
                context.cancel()
        return context

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            for context in self._all:
                context.cancel()


@dataclass
class _Reporter:
    """Prints each image of this batch as the pipeline saves it (an ``imagen_image_saved`` step)."""

    batch: str
    as_json: bool
    lock: threading.Lock = field(default_factory=threading.Lock)

    def imagen_image_saved(self, image: SavedImage, run: Run) -> None:
        if run.labels.get("batch") != self.batch or self.as_json:
            return
        with self.lock:
            click.echo(str(image.path))


@contextmanager
def _reporting(reporter: _Reporter) -> Iterator[None]:
    from imagen.plugins import get_plugin_manager, hookimpl

    class Step:
        @hookimpl
        def imagen_image_saved(self, image: SavedImage, run: Run) -> None:
            reporter.imagen_image_saved(image, run)

    manager = get_plugin_manager()
    name = f"imagen-batch-{reporter.batch}"
    manager.register(Step(), name=name)
    try:
        yield
    finally:
        manager.unregister(name=name)


def run_batch(
    config: Config,
    pool: BackendPool,
    requests: list[tuple[Line, Request]],
    *,
    source: str,
    backend: str | None,
    jobs: int,
    output_dir: Path | None,
    preview: bool | None,
    as_json: bool,
) -> None:
    """Run every request, ``jobs`` at a time; report each as it ends; exit as documented."""
    from imagen.cli.running import cancel_on_interrupt
    from imagen.pipeline import generate

    batch = uuid.uuid4().hex
    contexts = _Contexts()
    lock = threading.Lock()
    failures: list[tuple[Line, ImagenError]] = []
    step_failed = False

    def one(line: Line, request: Request) -> Outcome:
        return generate(
            config,
            request,
            backend=backend,
            context=contexts.new(),
            pool=pool,
            labels={"batch": batch, "prompt_line": line.number},
            output_dir=output_dir,
            preview=preview,
        )

    with (
        _reporting(_Reporter(batch, as_json)),
        cancel_on_interrupt(contexts),  # type: ignore[arg-type]
        ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="imagen-prompt") as workers,
    ):
        running = {workers.submit(one, line, request): line for line, request in requests}
        for future in as_completed(running):
            line = running[future]
            try:
                outcome = future.result()
            except ImagenError as exc:
                failures.append((line, exc))
                _report_failure(source, line, exc, as_json, lock)
                continue
            step_failed |= bool(outcome.step_failures)
            for failure in outcome.step_failures:
                log.error("%s:%d: %s failed: %s", source, line.number, failure.hook, failure)
            if as_json:
                _print_json(lock, _result(line, outcome))
    if contexts.cancelled:
        fail("interrupted", 130)
    if failures and len(failures) == len(requests):
        first = min(failures, key=lambda item: item[0].number)[1]
        raise click.exceptions.Exit(first.exit_code)
    if failures:
        raise click.exceptions.Exit(SOME_FAILED)
    if step_failed:
        raise click.exceptions.Exit(STEP_FAILED)


def _result(line: Line, outcome: Outcome) -> dict[str, Any]:
    return {
        "line": line.number,
        "prompt": line.prompt,
        "images": [
            {
                "path": str(i.path),
                "seed": i.record.get("seed"),
                "image_seed": i.record.get("image_seed"),
            }
            for i in outcome.images
        ],
        "duration_s": round(outcome.duration_s, 3),
        "ignored": outcome.ignored,
    }


def _report_failure(
    source: str, line: Line, exc: ImagenError, as_json: bool, lock: threading.Lock
) -> None:
    from imagen import secrets
    from imagen.cli import one_line
    from imagen.cli.jsonout import error_object

    text = one_line(secrets.redact(str(exc)))
    if as_json:
        _print_json(
            lock,
            {"line": line.number, "prompt": line.prompt, **error_object(text, exc.exit_code, exc)},
        )
    with lock:
        click.echo(f"imagen: {source}:{line.number}: {text}", err=True)


def _print_json(lock: threading.Lock, body: dict[str, Any]) -> None:
    with lock:
        click.echo(json.dumps(body, ensure_ascii=False, default=str))

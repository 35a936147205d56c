"""``imagen generate``: make images from a prompt."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imagen.cli import STEP_FAILED, State, fail

if TYPE_CHECKING:
    from imagen.config import Config
    from imagen.context import Context
    from imagen.pipeline import Outcome
    from imagen.request import Request

log = logging.getLogger("imagen")


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` → (key, value); the value is JSON when it parses (numbers, booleans)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint="--opt")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


@contextmanager
def _cancel_on_interrupt(context: Context) -> Iterator[None]:
    """First Ctrl-C cancels the run cleanly; a second one interrupts at once."""
    if sys.platform == "win32" or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if context.cancelled:
            raise KeyboardInterrupt
        log.warning("cancelling… (Ctrl-C again to stop at once)")
        context.cancel()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _base_fields(source: Path | None) -> dict[str, Any]:
    if source is None:
        return {}
    from imagen.metadata.reader import read_image_info

    return read_image_info(source).replay()


def _build_request(config: Config, base: dict[str, Any], given: dict[str, Any]) -> Request:
    from imagen.request import Request

    fields = {**base, **{k: v for k, v in given.items() if v is not None}}
    if "style" not in given or given["style"] is None:
        # A replayed record carries the prompt its style produced; reusing that prompt
        # (not the style as it is defined today) is what makes the same picture again.
        if base.get("final_prompt") and given.get("prompt") is None:
            fields["prompt"] = base["final_prompt"]
            fields["negative_prompt"] = base.get("final_negative_prompt") or ""
        fields["style"] = None
    if fields.get("style"):
        config.style(fields["style"])  # an unknown style fails before the backend is built
    return Request(
        prompt=fields.get("prompt") or "",
        negative_prompt=fields.get("negative_prompt") or "",
        width=fields.get("width"),
        height=fields.get("height"),
        steps=fields.get("steps"),
        seed=fields.get("seed"),
        style=fields.get("style"),
        count=fields.get("count") or 1,
        options={**(base.get("options") or {}), **given.get("options", {})},
    )


def _report(outcome: Outcome, backend: str, as_json: bool, quiet: bool, explicit: set[str]) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "backend": backend,
                    "duration_s": round(outcome.duration_s, 3),
                    "images": [
                        {
                            "path": str(i.path),
                            "sidecar": str(i.sidecar) if i.sidecar else None,
                            "mime_type": i.mime_type,
                            "width": i.record.get("width"),
                            "height": i.record.get("height"),
                            "seed": i.record.get("seed"),
                            "image_seed": i.record.get("image_seed"),
                        }
                        for i in outcome.images
                    ],
                    "ignored": outcome.ignored,
                    "metadata": outcome.metadata,
                    "notes": outcome.notes,
                    "step_failures": [str(f) for f in outcome.step_failures],
                },
                indent=2,
                default=str,
            )
        )
    else:
        for image in outcome.images:
            click.echo(str(image.path))
    if not quiet:
        told = [name for name in outcome.ignored if name in explicit or name.startswith("options.")]
        if told:
            log.warning('backend "%s" ignored: %s', backend, ", ".join(told))
    for failure in outcome.step_failures:
        log.error("%s failed: %s", failure.hook.removeprefix("imagen_"), failure)


@click.command()
@click.argument("prompt", required=False)
@click.option(
    "-b", "--backend", help="Backend instance from imagen.yaml (default: default_backend)."
)
@click.option("-s", "--style", help="Style preset to apply (see `imagen styles`).")
@click.option("--negative", "negative_prompt", help="Negative prompt: what to keep out.")
@click.option("--size", help="Image size as WIDTHxHEIGHT, e.g. 1024x768.")
@click.option("--width", type=click.IntRange(min=1), help="Width in pixels.")
@click.option("--height", type=click.IntRange(min=1), help="Height in pixels.")
@click.option("--steps", type=click.IntRange(min=1), help="Sampling steps.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed (default: a random one, recorded).")
@click.option("-n", "--count", type=click.IntRange(min=1), help="How many images to make.")
@click.option(
    "--opt",
    "opts",
    multiple=True,
    metavar="KEY=VALUE",
    help="Backend option, repeatable (e.g. --opt delay=2).",
)
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Save here instead of output.directory.",
)
@click.option(
    "--from",
    "source",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Replay the request that made this image; flags override.",
)
@click.option("--preview/--no-preview", default=None, help="Open each image in a tmux window.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the saved paths; no notes.")
@click.option("-v", "--verbose", is_flag=True, help="More detail, and tracebacks on errors.")
@click.pass_obj
def generate(
    state: State,
    prompt: str | None,
    size: str | None,
    opts: tuple[str, ...],
    output_dir: Path | None,
    source: Path | None,
    preview: bool | None,
    as_json: bool,
    quiet: bool,
    verbose: bool,
    **flags: Any,
) -> None:
    """Generate images from PROMPT ("-" reads it from standard input).

    Prints the path of each saved image. With --from IMAGE, the request that made IMAGE is
    made again (from its imagen metadata, sidecar, or A1111/ComfyUI parameters); any flag
    given overrides the recorded value.
    """
    from imagen.context import Context
    from imagen.pipeline import generate as run_pipeline
    from imagen.styles import parse_size

    if verbose:
        state.debug = True
        log.setLevel(logging.INFO)
    if quiet:
        log.setLevel(logging.ERROR)
    if prompt == "-":
        prompt = sys.stdin.read().strip()
    if prompt is None and source is None:
        raise click.UsageError("give a PROMPT, or --from IMAGE to replay one")
    if size:
        try:
            width, height = parse_size(size)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--size") from None
        flags["width"] = flags["width"] or width  # --width/--height win over --size
        flags["height"] = flags["height"] or height
    options = dict(parse_option(text) for text in opts)
    config = state.config()
    from imagen.cloud.settings import read_cloud

    read_cloud(config)  # an unset key is a config error now, not after paying for images
    base = _base_fields(source)
    given = {"prompt": prompt, "options": options, **flags}
    request = _build_request(config, base, given)
    backend = flags["backend"] or base.get("backend")
    if backend and backend not in config.backends and flags["backend"] is None:
        fail(
            f'{source} was made by backend "{backend}", which is not configured here; '
            f"choose one with --backend",
            3,
        )

    progress = None
    if sys.stderr.isatty() and not quiet:
        from imagen.cli.progress import ProgressLine

        progress = ProgressLine(backend or config.default_backend)
    context = Context(on_progress=progress)
    try:
        with _cancel_on_interrupt(context):
            outcome = run_pipeline(
                config,
                request,
                backend=backend,
                context=context,
                output_dir=output_dir,
                preview=preview,
            )
    finally:
        if progress is not None:
            progress.clear()
    explicit = {name for name in ("negative_prompt", "steps") if given.get(name)}
    if given.get("seed") is not None:
        explicit.add("seed")
    _report(outcome, backend or config.default_backend, as_json, quiet, explicit)
    if (
        source is not None
        and not quiet
        and not all(i.record.get("reproducible") for i in outcome.images)
    ):
        log.warning(
            'backend "%s" does not promise the same pixels for the same seed: '
            "expect a similar image, not the same one",
            backend or config.default_backend,
        )
    if outcome.step_failures:
        raise click.exceptions.Exit(STEP_FAILED)

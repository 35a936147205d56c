"""``imagen generate``: make images from a prompt."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imagen.cli import STEP_FAILED, State, fail, running
from imagen.cli.completion import complete_backend, complete_style
from imagen.cli.inputs import input_options, loaded_inputs, recorded_inputs

if TYPE_CHECKING:
    from imagen.backend import Backend
    from imagen.cli.batch import Line
    from imagen.config import Config
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


def _base_fields(source: Path | None) -> dict[str, Any]:
    if source is None:
        return {}
    from imagen.metadata.reader import read_image_info

    return read_image_info(source).replay()


def _build_request(
    config: Config, base: dict[str, Any], given: dict[str, Any], inputs: list[Any]
) -> Request:
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
        inputs=tuple(inputs),
        strength=fields.get("strength"),
    )


@click.command()
@click.argument("prompt", required=False)
@click.option(
    "-b",
    "--backend",
    shell_complete=complete_backend,
    help="Backend instance from imagen.yaml (default: default_backend).",
)
@click.option(
    "-s",
    "--style",
    shell_complete=complete_style,
    help="Style preset to apply (see `imagen styles`).",
)
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
@input_options
@click.option(
    "--preview/--no-preview",
    default=None,
    help="Show each image: in a tmux window, or drawn in the terminal (kitty, iTerm2, sixel).",
)
@click.option("--open", "open_after", is_flag=True, help="Open each image in the system's viewer.")
@click.option(
    "--prompts",
    "prompts_file",
    metavar="FILE",
    help="Make each line of FILE a prompt ('-': standard input); the flags apply to each.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1, max=64),
    default=4,
    show_default=True,
    help="With --prompts: how many run at once.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show the request (style applied, seed chosen), backend and price; make nothing.",
)
@click.option(
    "-y",
    "--yes",
    is_flag=True,
    help="Don't ask before a paid run of many images (usage.confirm_over).",
)
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
    open_after: bool,
    prompts_file: str | None,
    jobs: int,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    quiet: bool,
    verbose: bool,
    images: tuple[str, ...],
    references: tuple[str, ...],
    mask: str | None,
    **flags: Any,
) -> None:
    """Generate images from PROMPT ("-" reads it from standard input).

    Prints the path of each saved image. With --prompts FILE, each line is a prompt, run up
    to --jobs at a time, each image printed as it is saved; a prompt that fails does not
    stop the others (exit 9 when some failed). With --image (and --mask, --reference,
    --strength) the backend edits, or starts from, the given images. With --from IMAGE,
    the request that made IMAGE is made again (from its imagen metadata, sidecar, or
    A1111/ComfyUI parameters), its input images found again; any flag given overrides
    the recorded value.
    """
    from imagen.styles import parse_size

    if verbose:
        state.debug = True
        log.setLevel(logging.INFO)
    if quiet:
        log.setLevel(logging.ERROR)
    lines = None
    if prompts_file is not None:
        if prompt is not None or source is not None:
            raise click.UsageError("give PROMPT, --from or --prompts, not two of them")
        if prompts_file == "-" and "-" in (*images, *references, mask):
            raise click.UsageError("standard input can be the prompts or an image, not both")
        from imagen.cli.batch import read_prompts

        prompts_file, lines = read_prompts(prompts_file)
        prompt = lines[0].prompt
    if prompt == "-":
        if "-" in (*images, *references, mask):
            raise click.UsageError("standard input can be the prompt or an image, not both")
        prompt = sys.stdin.read().strip()
    if prompt is None and source is None:
        raise click.UsageError("give a PROMPT, or --from IMAGE to replay one")
    if size:
        if flags["width"] or flags["height"]:
            raise click.UsageError("give --size or --width/--height, not both")
        try:
            width, height = parse_size(size)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--size") from None
        flags["width"], flags["height"] = width, height
    options = dict(parse_option(text) for text in opts)
    config = state.config()
    from imagen.cloud.settings import read_cloud

    read_cloud(config)  # an unset key is a config error now, not after paying for images
    base = _base_fields(source)
    given = {"prompt": prompt, "options": options, **flags}
    with loaded_inputs(images, references, mask) as inputs:
        if not inputs and base.get("inputs"):
            inputs = recorded_inputs(base["inputs"], output_dir or config.output.directory)
        request = _build_request(config, base, given, inputs)
        if lines is not None or dry_run:
            _plan_and_run(
                config,
                request,
                lines,
                given["backend"],
                dry_run,
                yes,
                as_json,
                jobs=jobs,
                source=prompts_file or "",
                output_dir=output_dir,
                preview=preview,
            )
            return
        outcome = _generate(
            config, request, base, given, source, output_dir, preview, as_json, quiet, yes
        )
    if open_after:
        from imagen.opener import open_with_system

        for image in outcome.images:
            open_with_system(image.path)
    if outcome.step_failures:
        raise click.exceptions.Exit(STEP_FAILED)


def _generate(
    config: Config,
    request: Request,
    base: dict[str, Any],
    given: dict[str, Any],
    source: Path | None,
    output_dir: Path | None,
    preview: bool | None,
    as_json: bool,
    quiet: bool,
    yes: bool,
) -> Outcome:
    """Run ``request`` and report it (the command, once its inputs are loaded)."""
    from imagen.pipeline import BackendPool, choose_seed

    backend = given["backend"] or base.get("backend")
    if backend and backend not in config.backends and given["backend"] is None:
        fail(
            f'{source} was made by backend "{backend}", which is not configured here; '
            f"choose one with --backend",
            3,
        )

    if request.seed is None:
        request = request.replace(seed=choose_seed())  # chosen here: the run's record has it
    explicit = _explicit(given)
    name = backend or config.default_backend
    pool = BackendPool(config)
    try:
        instance = pool.get(backend)
        from imagen.cli.plan import confirm, plan

        confirm(config, [plan(config, instance, request)], yes)
        tracker = None
        if instance.supports_resume:
            tracker = _tracker(config, instance, request, output_dir, preview, explicit)
        outcome = running.run(
            config,
            pool,
            tracker,
            label=name,
            quiet=quiet,
            request=request,
            backend=backend,
            output_dir=output_dir,
            preview=preview,
        )
    finally:
        pool.close()
    running.report(outcome, name, as_json, quiet, explicit)
    if (
        source is not None
        and not quiet
        and not all(i.record.get("reproducible") for i in outcome.images)
    ):
        log.warning(
            'backend "%s" does not promise the same pixels for the same seed: '
            "expect a similar image, not the same one",
            name,
        )
    return outcome


def _plan_and_run(
    config: Config,
    request: Request,
    lines: list[Line] | None,
    backend: str | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    **batch: Any,
) -> None:
    """``--dry-run`` (of one prompt or a file's), or ``--prompts``: plan every run first."""
    from imagen.cli import plan as planning
    from imagen.pipeline import BackendPool

    requests = (
        [request] if lines is None else [request.replace(prompt=line.prompt) for line in lines]
    )
    pool = BackendPool(config)
    try:
        instance = pool.get(backend)
        plans = [planning.plan(config, instance, item) for item in requests]
        if dry_run:
            planning.show(plans, as_json)
            return
        planning.confirm(config, plans, yes)
        assert lines is not None
        from imagen.cli.batch import run_batch

        run_batch(
            config,
            pool,
            [(line, item.original) for line, item in zip(lines, plans, strict=True)],
            backend=backend,
            as_json=as_json,
            **batch,
        )
    finally:
        pool.close()


def _explicit(given: dict[str, Any]) -> set[str]:
    """The request fields set by flag: a backend ignoring one is worth a warning."""
    explicit = {name for name in ("negative_prompt", "steps", "width", "height") if given.get(name)}
    explicit |= {name for name in ("seed", "count", "strength") if given.get(name) is not None}
    return explicit


def _tracker(
    config: Config,
    instance: Backend,
    request: Request,
    output_dir: Path | None,
    preview: bool | None,
    explicit: set[str],
) -> running.RunTracker:
    """What to record of this run once its backend reports the upstream run's id."""
    from imagen.runs import RunBook, RunRecord
    from imagen.styles import apply_style

    style = config.style(request.style) if request.style else None
    record = RunRecord.new(
        run_id="",
        backend=instance.name,
        backend_type=instance.config.type,
        config=running.absolute(config.file) if config.file else None,
        request=request,
        styled=apply_style(request, style),
        output_dir=running.absolute(output_dir or config.output.directory),
        preview=preview,
        explicit=tuple(sorted(explicit)),
    )
    return running.RunTracker(RunBook(), record)

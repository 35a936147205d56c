"""The ``comfyui`` backend: submit a graph, follow it live, stream its images from /view."""

from __future__ import annotations

import logging
import random
import uuid
from typing import Any, ClassVar

try:
    import httpx  # noqa: F401 (fail here, with the install command, not deep inside a call)
    import websocket  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without the package's dependencies
    raise ImportError(f"{exc}; install them with: pip install imagen-comfyui") from exc

from imagen import (
    Backend,
    BackendConfig,
    Cancelled,
    Context,
    ModelInfo,
    PermanentBackendError,
    Request,
    RequestError,
    Result,
    TransientBackendError,
    run_blocking,
)
from imagen.inputs import InputSupport
from imagen.retry import call_with_retry
from imagen_comfyui.client import ComfyClient, node_name
from imagen_comfyui.run import RunFollower, RunResult
from imagen_comfyui.settings import read_settings
from imagen_comfyui.templates import NEEDS_IMAGE
from imagen_comfyui.uploads import Uploader, expected_files

__all__ = ["SEED_MAX", "ComfyUIBackend"]

SEED_MAX = 2**64 - 1
# Classes whose seed inputs take ComfyUI's whole range: no need to ask the server.
_FULL_RANGE_SEEDS = frozenset(
    {"KSampler", "KSamplerAdvanced", "RandomNoise", "SamplerCustom", "SamplerCustomAdvanced"}
)
log = logging.getLogger("imagen.comfyui")


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int)


class ComfyUIBackend(Backend):
    """Generates through a ComfyUI server's HTTP and websocket API.

    ComfyUI promises the same pixels for the same graph and seed on the same machine, so
    this backend is ``reproducible``; a different GPU or ComfyUI version may still differ.
    """

    reproducible: ClassVar[bool] = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.settings = read_settings(config)
        self.client = ComfyClient(self.settings)
        self._version: str | None = None
        self._seed_limits: dict[tuple[str, str], int | None] = {}

    def close(self) -> None:
        self.client.close()

    def probe(self) -> str:
        """``/system_stats``, and every file the workflow loads checked on the server."""
        from imagen_comfyui.catalog import probe

        return probe(self.client, self.settings.workflow.graph)

    def models(self) -> list[ModelInfo]:
        """The checkpoints, diffusion models, LoRAs and VAEs the server's loaders list."""
        from imagen_comfyui.catalog import list_models

        return list_models(self.client, self.settings.workflow.graph)

    def options(self) -> dict[str, str]:
        """None: a workflow's inputs are set through its mapping (``inputs:``), not ``--opt``."""
        return {}

    def input_support(self) -> InputSupport:
        """What the workflow maps: an image, a mask, a strength (a sampler's denoise).

        ``inputs.image`` takes one image, ``inputs.mask`` a mask and ``inputs.strength``
        the strength; a workflow that maps none of them takes no input images.
        """
        targets = self.settings.workflow.targets
        return InputSupport(
            images=1 if targets.get("image") else 0,
            mask=bool(targets.get("mask")),
            strength=bool(targets.get("strength")),
        )

    def check(self, request: Request) -> None:
        """The img2img and inpaint templates start from an image (and a mask)."""
        template = self.settings.template
        if template not in NEEDS_IMAGE:
            return
        if not request.inputs_of("image"):
            raise RequestError(f"template {template} starts from an input image: give --image")
        if template == "inpaint" and not request.inputs_of("mask"):
            raise RequestError("template inpaint repaints where a mask says: give --mask")

    # -- the contract ---------------------------------------------------------------------

    def generate(self, request: Request, context: Context) -> Result:
        context.check()
        seed = request.seed if request.seed is not None else random.randrange(SEED_MAX + 1)
        if not 0 <= seed <= SEED_MAX:
            raise PermanentBackendError(f"seed {seed} is outside ComfyUI's 0 … 2^64-1")
        workflow = self.settings.workflow
        uploader = Uploader(self.client, context, self.settings.retry, workflow)
        files = uploader.files(request) if request.inputs else {}
        graph, inputs_set, ignored = workflow.apply(request, seed, self._seed_max(seed), files)
        if "count" in ignored:
            raise PermanentBackendError(
                f"this workflow has no batch size input to make {request.count} images; "
                "map inputs.count to an Empty Latent Image's batch_size"
            )
        prompt_id = str(uuid.uuid4())
        follower = RunFollower(self.client, self.settings, prompt_id, context, graph)
        follower.connect()  # before /prompt, so no event of the run is missed
        context.report_run_id(prompt_id)
        try:
            try:
                # Safe to repeat: a failed submission is looked up by its id before another.
                answer = call_with_retry(
                    lambda: self._submit(graph, prompt_id, context, follower),
                    what="submitting the workflow",
                    context=context,
                    policy=self.settings.retry,
                    safe_to_repeat=True,
                )
            except KeyboardInterrupt:
                self.client.cancel(prompt_id)  # it may have been queued all the same
                raise
            except Cancelled:
                follower.stop_upstream()  # not when detached: the run goes on for another
                raise
            skipped = self.client.skipped_outputs(answer.get("node_errors"), graph)
            self._warn_skipped(skipped)
            run = follower.follow()
        finally:
            follower.close()
        return self._result(run, request, seed, inputs_set, ignored, prompt_id, skipped)

    def resume(self, run_id: str, request: Request, context: Context) -> Result:
        context.report_run_id(run_id)
        workflow = self.settings.workflow
        # The inputs went up when the run started: name them, send nothing.
        files = expected_files(request, workflow)
        graph, inputs_set, ignored = workflow.apply(
            request, request.seed, self._seed_max(request.seed), files
        )
        follower = RunFollower(self.client, self.settings, run_id, context, graph)
        run = follower.follow()  # starts by looking the run up: history, queue, or lost
        _record_loaded_files(inputs_set, set(files.values()), follower.server_graph)
        # The answer that named the outputs left out is gone; the run's entry still lists
        # the outputs it executes.
        executed = follower.executed_outputs
        skipped = {}
        if executed is not None:
            left_out = [node for node in self._output_nodes(graph) if node not in executed]
            skipped = {
                node: "ComfyUI left it out when it validated the workflow" for node in left_out
            }
        self._warn_skipped(skipped)
        return self._result(run, request, request.seed, inputs_set, ignored, run_id, skipped)

    # -- internals ------------------------------------------------------------------------

    def _submit(
        self, graph: dict[str, Any], prompt_id: str, context: Context, follower: RunFollower
    ) -> dict[str, Any]:
        try:
            # A POST that hangs must not outlive a cancel or the deadline.
            return run_blocking(
                lambda: self.client.submit(graph, prompt_id, client_id=prompt_id),
                context,
                interrupt=follower.stop_upstream,
                what="submitting the workflow",
            )
        except TransientBackendError:
            # The request may have reached ComfyUI before the connection failed: we chose the
            # id, so look for it before reporting a failure (and before anyone resubmits).
            if not self._known(prompt_id, context):
                raise
            return {}

    def _warn_skipped(self, skipped: dict[str, str]) -> None:
        graph = self.settings.workflow.graph
        for node, reason in skipped.items():
            log.warning(
                'backend "%s": ComfyUI runs only part of the workflow: output %s is left out: %s',
                self.name,
                node_name(graph, node),
                reason,
            )

    def _output_nodes(self, graph: dict[str, Any]) -> list[str]:
        """The graph's output nodes, by ComfyUI's catalogue (nodes nothing else reads)."""
        read = {
            str(v[0]) for e in graph.values() for v in e.get("inputs", {}).values() if _is_link(v)
        }
        found = []
        for node, entry in graph.items():
            if node in read:
                continue
            try:
                if self.client.object_info(entry["class_type"]).get("output_node"):
                    found.append(node)
            except (TransientBackendError, PermanentBackendError):
                return []  # unknown: claim nothing was left out
        return found

    def _seed_max(self, seed: int | None) -> dict[str, int]:
        """The range of each seed input narrower than ``seed``, from ComfyUI's catalogue."""
        if seed is None:
            return {}
        limits = {}
        graph = self.settings.workflow.graph
        for target in self.settings.workflow.targets.get("seed", []):
            kind = graph[target.node]["class_type"]
            if kind in _FULL_RANGE_SEEDS:
                continue
            key = (kind, target.input)
            if key not in self._seed_limits:
                self._seed_limits[key] = self._input_max(kind, target.input)
            top = self._seed_limits[key]
            if top is not None and seed > top:
                limits[str(target)] = top
        return limits

    def _input_max(self, class_type: str, name: str) -> int | None:
        try:
            spec = self.client.object_info(class_type).get("input") or {}
        except (TransientBackendError, PermanentBackendError):
            return None  # ComfyUI will say what it accepts, if it cares
        config = {**(spec.get("required") or {}), **(spec.get("optional") or {})}.get(name)
        if isinstance(config, list) and len(config) > 1 and isinstance(config[1], dict):
            top = config[1].get("max")
            if isinstance(top, int) and not isinstance(top, bool):
                return top
        return None

    def _known(self, prompt_id: str, context: Context) -> bool:
        """Whether ComfyUI has run ``prompt_id`` queued, running or finished."""
        try:
            if run_blocking(lambda: self.client.history(prompt_id), context) is not None:
                return True
            queue = run_blocking(self.client.queue, context)
        except TransientBackendError:
            return False
        entries = queue.get("queue_running", []) + queue.get("queue_pending", [])
        return any(entry[1] == prompt_id for entry in entries)

    def _comfyui_version(self) -> str | None:
        if self._version is None:
            try:
                self._version = self.client.system_stats().get("system", {}).get("comfyui_version")
            except (TransientBackendError, PermanentBackendError):
                return None
        return self._version

    def _result(
        self,
        run: RunResult,
        request: Request,
        seed: int | None,
        inputs_set: dict[str, Any],
        ignored: list[str],
        prompt_id: str,
        skipped: dict[str, str],
    ) -> Result:
        images = [self.client.image(output) for output in run.outputs]
        metadata: dict[str, Any] = {
            "prompt_id": prompt_id,
            "upstream_id": prompt_id,
            "comfyui_version": self._comfyui_version(),
            "model": self.settings.model,
            "sampler": self.settings.sampler,
            "workflow": self.settings.workflow.source,
            "seed": seed,
            "inputs": inputs_set,
            "timings": {"queue_s": _round(run.queue_s), "execution_s": _round(run.execution_s)},
            "skipped_outputs": skipped or None,
            "denoising_strength": self._denoise(request, inputs_set),
        }
        cost = self._cost(run, len(images))
        if cost is not None:
            metadata["cost_usd"] = cost
        ignored = ignored + [f"options.{key}" for key in request.options]
        if ignored:
            metadata["ignored"] = ignored
        return Result(images, {key: value for key, value in metadata.items() if value is not None})

    def _denoise(self, request: Request, inputs_set: dict[str, Any]) -> float | None:
        """The strength an image run went at: the request's, or the workflow's own."""
        targets = self.settings.workflow.targets.get("strength") or []
        if not request.inputs_of("image") or not targets:
            return None
        target = targets[0]
        value = inputs_set.get(str(target))
        if value is None:
            value = self.settings.workflow.graph[target.node]["inputs"].get(target.input)
        return value if isinstance(value, int | float) else None

    def estimate_cost(self, request: Request) -> float | None:
        """``price_per_image`` times the count; free (0) when no price is set: your own GPU.

        None (unknown) with only ``price_per_second``: that is known after the run.
        """
        per_image, per_second = self.settings.price_per_image, self.settings.price_per_second
        if per_image is None:
            return None if per_second is not None else 0.0
        return round(per_image * request.count, 6)

    def _cost(self, run: RunResult, count: int) -> float | None:
        per_second, per_image = self.settings.price_per_second, self.settings.price_per_image
        if per_second is None and per_image is None:
            return None
        cost = (per_image or 0.0) * count
        if per_second is not None and run.execution_s is not None:
            cost += per_second * run.execution_s
        return round(cost, 6)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _record_loaded_files(
    inputs_set: dict[str, Any], expected: set[str], server_graph: dict[str, Any] | None
) -> None:
    """Record the input files a resumed run really loads, as ComfyUI's own graph names them.

    A resume names the uploads by their content hash; ComfyUI may have stored one under
    another name (``<hash> (1).png`` when other bytes held the name), which the graph the
    server ran still says.
    """
    if not server_graph:
        return
    for key, value in inputs_set.items():
        if value not in expected:
            continue
        node, _, field = key.partition(".")
        actual = (server_graph.get(node) or {}).get("inputs", {}).get(field)
        if isinstance(actual, str):
            inputs_set[key] = actual

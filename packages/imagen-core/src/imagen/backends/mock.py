"""The built-in offline backend, type ``mock``.

It needs no network and no model: it draws a placeholder picture from the prompt and the
seed (byte-identical for the same prompt, seed, size and format), with both written on it.
It honours width, height, count and seed; image ``i`` of a request uses seed ``seed + i``.
It takes input images as a real editing model would, visibly (see
:mod:`imagen.backends.compose`): one ``image`` (the output is its size unless a size is
given), a ``mask``, up to four ``reference`` images, and ``strength``.

Its slice keys are :data:`SLICE` and its options (``--opt``) :data:`OPTIONS`; both tables
are rendered into ``docs/config.md``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

from imagen.backend import Backend, BackendConfig
from imagen.backends.drawing import FORMATS, encode, picture, render
from imagen.config import Setting
from imagen.context import Context, Progress
from imagen.errors import PermanentBackendError, RequestError, TransientBackendError
from imagen.inputs import InputSupport
from imagen.request import IGNORED_KEY, GeneratedImage, Request, Result
from imagen.upstream import ModelInfo

__all__ = ["MAX_SIDE", "MIN_SIDE", "MockBackend"]

MIN_SIDE = 16
MAX_SIDE = 4096
DEFAULT_SIDE = 512
_FAILURES = ("config", "transient", "permanent")
SLICE: dict[str, Setting] = {
    "width": Setting(int, DEFAULT_SIDE, f"default width, {MIN_SIDE} to {MAX_SIDE} pixels"),
    "height": Setting(int, DEFAULT_SIDE, f"default height, {MIN_SIDE} to {MAX_SIDE} pixels"),
    "format": Setting(str, "png", "image format: png, jpeg or webp"),
    "price_per_image_usd": Setting(
        float, 0.0, "a pretend price, to try spending caps (`usage.budget`) offline"
    ),
}
OPTIONS: dict[str, Setting] = {
    "delay": Setting(float, 0, "seconds to take, reporting progress and honouring cancellation"),
    "fail": Setting(str, None, "fail that way after the delay: config, transient or permanent"),
    "format": Setting(str, None, "image format for this request, overriding the slice's"),
}
_TICK = 0.05  # seconds between cancellation checks while delaying


class MockBackend(Backend):
    """Offline placeholder pictures; see the module docstring."""

    reproducible: ClassVar[bool] = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        config.check_keys(SLICE)
        self.width = self._side(config.get("width", int), "width", DEFAULT_SIDE, config)
        self.height = self._side(config.get("height", int), "height", DEFAULT_SIDE, config)
        self.format = config.choice("format", FORMATS, "png") or "png"
        price = config.get("price_per_image_usd", float)
        if price is not None and price < 0:
            raise config.error(f"must not be negative, not {price}", "price_per_image_usd")
        self.price = price or 0.0

    def estimate_cost(self, request: Request) -> float | None:
        return self.price * request.count

    @staticmethod
    def _side(value: int | None, key: str, default: int, config: BackendConfig) -> int:
        if value is None:
            return default
        if not MIN_SIDE <= value <= MAX_SIDE:
            raise config.error(f"must be between {MIN_SIDE} and {MAX_SIDE}, not {value}", key)
        return value

    def _options(self, options: Mapping[str, Any]) -> tuple[float, str | None, str, list[str]]:
        ignored = [f"options.{key}" for key in options if key not in OPTIONS]
        delay = options.get("delay", 0)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise PermanentBackendError(f"option delay must be a number of seconds, not {delay!r}")
        fail = options.get("fail")
        if fail is not None and fail not in _FAILURES:
            raise PermanentBackendError(
                f"option fail must be one of {', '.join(_FAILURES)}, not {fail!r}"
            )
        fmt = options.get("format", self.format)
        if fmt not in FORMATS:
            raise PermanentBackendError(
                f"option format must be one of {', '.join(FORMATS)}, not {fmt!r}"
            )
        return float(delay), fail, fmt, ignored

    def input_support(self) -> InputSupport:
        return InputSupport(images=1, references=4, mask=True, strength=True)

    def options(self) -> dict[str, str]:
        return {name: setting.doc for name, setting in OPTIONS.items()}

    def probe(self) -> str:
        return "offline: nothing to contact"

    def models(self) -> list[ModelInfo]:
        return [ModelInfo("imagen-mock", "model", "placeholder pictures, offline", current=True)]

    def _size(self, request: Request) -> tuple[int, int]:
        """The output size: as asked, else the input image's, else the slice's default."""
        (image,) = request.inputs_of("image") or (None,)
        width = request.width or (image.width if image else self.width)
        height = request.height or (image.height if image else self.height)
        return width, height

    def check(self, request: Request) -> None:
        width, height = self._size(request)
        for name, side in (("width", width), ("height", height)):
            if not MIN_SIDE <= side <= MAX_SIDE:
                raise RequestError(
                    f"{name} {side} is out of bounds for the mock backend "
                    f"({MIN_SIDE} to {MAX_SIDE} pixels)"
                )
        try:
            self._options(request.options)
        except PermanentBackendError as exc:
            raise RequestError(exc.message) from None

    def generate(self, request: Request, context: Context) -> Result:
        started = time.perf_counter()
        width, height = self._size(request)
        for name, side in (("width", width), ("height", height)):
            if not MIN_SIDE <= side <= MAX_SIDE:
                raise PermanentBackendError(
                    f"{name} {side} is out of bounds for the mock backend "
                    f"({MIN_SIDE} to {MAX_SIDE} pixels)"
                )
        delay, fail, fmt, ignored = self._options(request.options)
        ignored += [name for name in ("negative_prompt", "steps") if getattr(request, name)]
        seed = request.seed if request.seed is not None else 0

        context.check()
        context.progress(Progress("started"))
        self._delay(delay, request.steps or 10, context)
        if fail == "config":
            raise self.config.error("simulated configuration error (option fail=config)")
        if fail == "transient":
            raise TransientBackendError(
                "simulated transient failure (option fail=transient)", retry_after=1.0
            )
        if fail == "permanent":
            raise PermanentBackendError("simulated permanent failure (option fail=permanent)")

        images = []
        for index in range(request.count):
            context.check()
            image_seed = seed + index
            data = self._draw(request, image_seed, width, height, fmt)
            images.append(GeneratedImage.from_bytes(data, FORMATS[fmt], seed=image_seed))
        context.progress(Progress("finished"))
        metadata: dict[str, Any] = {
            "model": "imagen-mock",
            "width": width,
            "height": height,
            "render_s": round(time.perf_counter() - started - delay, 4),
            "cost_usd": round(self.price * len(images), 6),
        }
        if ignored:
            metadata[IGNORED_KEY] = ignored
        return Result(images, metadata)

    @staticmethod
    def _draw(request: Request, seed: int, width: int, height: int, fmt: str) -> bytes:
        if not request.inputs:
            return render(request.prompt, seed, width, height, fmt)
        from imagen.backends.compose import compose

        (image,) = request.inputs_of("image") or (None,)
        (mask,) = request.inputs_of("mask") or (None,)
        placeholder = picture(request.prompt, seed, width, height)
        edited = compose(placeholder, image, mask, request.inputs_of("reference"), request.strength)
        return encode(edited, fmt)

    @staticmethod
    def _delay(delay: float, steps: int, context: Context) -> None:
        if delay <= 0:
            return
        deadline = time.monotonic() + delay
        step = 0
        while (left := deadline - time.monotonic()) > 0:
            context.wait(min(_TICK, left))
            done = min(steps, int(steps * (1 - max(0.0, deadline - time.monotonic()) / delay)))
            if done > step:
                step = done
                context.progress(Progress("step", step, steps))
        if step < steps:
            context.progress(Progress("step", steps, steps))

"""What a backend is asked for (:class:`Request`) and what it hands back (:class:`Result`)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, Self

from imagen.errors import RequestError
from imagen.inputs import InputImage, check_inputs

__all__ = ["IGNORED_KEY", "GeneratedImage", "Request", "Result"]

IGNORED_KEY = "ignored"
"""Metadata key under which a backend lists the request fields it did not honour."""

REQUEST_FIELDS = (
    "prompt", "negative_prompt", "width", "height", "steps", "seed", "count", "strength",
)  # fmt: skip


@dataclass(frozen=True)
class Request:
    """One generation request, after imagen has applied the style.

    :param prompt: the text prompt, style suffix included.
    :param negative_prompt: what to keep out of the picture ("" for none).
    :param width: width in pixels, or None for the backend's default.
    :param height: height in pixels, or None for the backend's default.
    :param steps: sampling steps, or None for the backend's default.
    :param seed: the seed; imagen always chooses one before calling a backend.
    :param style: the name of the style preset that was applied, for the record only.
    :param count: how many images to make (1 or more).
    :param options: backend options, free-form (``--opt KEY=VALUE``), for what only one
        upstream knows. A backend lists the ones it doesn't know as ``options.KEY`` under
        the ``ignored`` metadata key.
    :param inputs: input images (:class:`~imagen.inputs.InputImage`, each with a role:
        the image to edit or start from, a reference, a mask), already checked. imagen
        refuses a request whose inputs the backend does not accept
        (:meth:`~imagen.Backend.input_support`) before calling it.
    :param strength: for image-to-image, how far the result may move from the input image:
        0 keeps it, 1 ignores it (A1111's "denoising strength"); None for the backend's
        default. A backend that takes no strength lists ``strength`` as ignored.
    """

    prompt: str
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    seed: int | None = None
    style: str | None = None
    count: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[InputImage, ...] = ()
    strength: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise RequestError("the prompt is empty")
        for name in ("width", "height", "steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise RequestError(f"{name} must be a positive whole number, not {value!r}")
        if not isinstance(self.count, int) or self.count < 1:
            raise RequestError(f"count must be 1 or more, not {self.count!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise RequestError(f"seed must be a whole number of 0 or more, not {self.seed!r}")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not all(isinstance(item, InputImage) for item in self.inputs):
            raise RequestError("inputs must be checked input images (imagen.inputs.load_input)")
        check_inputs(self.inputs)
        if self.strength is not None and (
            isinstance(self.strength, bool)
            or not isinstance(self.strength, int | float)
            or not 0 <= self.strength <= 1
        ):
            raise RequestError(f"strength must be between 0 and 1, not {self.strength!r}")

    def inputs_of(self, role: str) -> tuple[InputImage, ...]:
        """The input images of ``role`` (``image``, ``reference`` or ``mask``), in order."""
        return tuple(item for item in self.inputs if item.role == role)

    def replace(self, **changes: Any) -> Request:
        """Return a copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The request as plain JSON-ready data."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "seed": self.seed,
            "style": self.style,
            "count": self.count,
            "options": dict(self.options),
            "inputs": [item.record() for item in self.inputs],
            "strength": self.strength,
        }


class _ChunkReader(io.RawIOBase):
    """A read-only binary stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


@dataclass
class GeneratedImage:
    """One image of a :class:`Result`, as a stream imagen reads once, to disk.

    :param stream: a binary file-like object positioned at the image's first byte.
    :param mime_type: ``image/png``, ``image/jpeg`` or ``image/webp`` (what the bytes are).
    :param seed: the seed that makes this very image with ``count=1``, if the backend
        knows it (the built-in backend uses ``seed + index``); None when only the
        request's seed and the image's index reproduce it.
    :param metadata: facts about this image alone; merged over the result's metadata in
        its sidecar.
    """

    stream: BinaryIO
    mime_type: str
    seed: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_bytes(cls, data: bytes, mime_type: str, **kwargs: Any) -> GeneratedImage:
        """An image held in memory."""
        return cls(io.BytesIO(data), mime_type, **kwargs)

    @classmethod
    def from_path(cls, path: str | Path, mime_type: str, **kwargs: Any) -> GeneratedImage:
        """An image in a local file, opened now and read lazily."""
        return cls(open(path, "rb"), mime_type, **kwargs)  # closed by Result.close()

    @classmethod
    def from_chunks(cls, chunks: Iterable[bytes], mime_type: str, **kwargs: Any) -> GeneratedImage:
        """An image arriving in chunks, such as ``httpx.Response.iter_bytes()``."""
        return cls(io.BufferedReader(_ChunkReader(chunks)), mime_type, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.stream.close()


@dataclass
class Result:
    """What a backend returns: the images and a metadata map.

    The metadata reaches each image's sidecar verbatim. Well-known keys: ``model``,
    ``upstream_id``, ``cost_usd``, ``timings``, and ``ignored`` (the request fields the
    backend did not honour, like ``["negative_prompt", "options.foo"]``).

    Use it as a context manager, or call :meth:`close`, to release the image streams.
    """

    images: list[GeneratedImage]
    metadata: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        for image in self.images:
            image.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

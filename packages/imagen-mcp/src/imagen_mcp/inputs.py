"""Input images for ``generate_image`` and ``edit_image``: a path, base64 data, or a URI.

MCP image content is something a tool *returns*, not an argument, so a caller names each
input image one of three ways, each checked before anything reads it:

- ``path``: a file on the server's disk. Over stdio it must lie, symlinks resolved, under
  the output directory or one of ``mcp.input_roots``; over HTTP only an image made for
  the caller is read (as ``image_info`` reads one).
- ``data``: the file's bytes in base64 (a ``data:image/png;base64,`` URL too). Its length
  is bounded by ``mcp.input_max_bytes`` before a byte is decoded; it is decoded piece by
  piece into a private temporary directory, removed when the call ends, however it ends.
- ``uri``: an ``imagen://images/`` resource, an image imagen made earlier.

Every file then goes through :func:`imagen.inputs.load_input` (type, size and
decompression-bomb checks) like the CLI's ``--image``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Self

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagen.errors import RequestError
from imagen.inputs import MAX_INPUT_BYTES, MAX_INPUTS, InputImage, load_input
from imagen_mcp.images import URI_PREFIX, ImageShelf, NotAnImage

__all__ = ["MAX_DATA_CHARS", "ImageInput", "InputReader"]

MAX_DATA_CHARS = 4 * -(-MAX_INPUT_BYTES // 3) + 64
"""The longest ``data`` the schema lets through (base64 of the largest input, and a
``data:`` prefix); ``mcp.input_max_bytes`` bounds it further before decoding."""
_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]{1,40};base64,", re.IGNORECASE)
_PIECE = 4 * 256 * 1024  # base64 characters decoded at a time: a multiple of 4


class ImageInput(BaseModel):
    """One input image, named by exactly one of ``path``, ``data`` and ``uri``."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["image", "reference", "mask"] = Field(
        "image",
        description="image: the picture to edit or start from; reference: a picture to take "
        "a subject or style from; mask: where the image may change (white or transparent), "
        "the same size as the image.",
    )
    path: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="The image's path on the server's disk (under the output directory or "
        "mcp.input_roots).",
    )
    data: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_DATA_CHARS,
        description="The image file itself (PNG, JPEG or WebP), base64-encoded; a "
        "data:image/...;base64, URL works too.",
    )
    uri: str | None = Field(
        None,
        min_length=len(URI_PREFIX) + 1,
        max_length=4096,
        pattern=r"^imagen://images/",
        description="An imagen://images/ URI of an image made earlier.",
    )
    name: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[^/\\\x00-\x1f]+$",
        description="A file name to record for `data` (such as photo.png).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ImageInput:
        given = [key for key in ("path", "data", "uri") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of path, data and uri"
                + (f" (this one gives {', '.join(given)})" if given else "")
            )
        return self


class InputReader:
    """Turns a call's :class:`ImageInput` arguments into checked input images.

    Use it as a context manager: the temporary files of ``data`` inputs live until it
    closes. Blocking (reads and hashes files): run it in a worker thread.

    :param shelf: the images the resources offer (the output directory).
    :param roots: directories whose files stdio callers may give by path, besides the
        output directory.
    :param max_bytes: the largest input, also before decoding ``data``.
    :param owner: who calls, for an HTTP caller's images.
    """

    def __init__(
        self, shelf: ImageShelf, roots: Sequence[Path], max_bytes: int, owner: str
    ) -> None:
        self.shelf = shelf
        self.roots = [shelf.directory, *roots]
        self.max_bytes = max_bytes
        self.owner = owner
        self._scratch: Path | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def read(self, inputs: Sequence[ImageInput]) -> tuple[InputImage, ...]:
        """Each input checked, in order. :raises ToolError: naming the input and why."""
        if len(inputs) > MAX_INPUTS:
            raise ToolError(f"inputs: {len(inputs)} images, more than the {MAX_INPUTS} allowed")
        return tuple(self._one(index, item) for index, item in enumerate(inputs))

    def _one(self, index: int, item: ImageInput) -> InputImage:
        where = f"inputs[{index}]"
        try:
            if item.data is not None:
                path = self._decode(item.data, where)
                name = item.name or f"input-{index + 1}"
                return load_input(path, item.role, name=name, max_bytes=self.max_bytes)
            path = self._uri(item.uri) if item.uri is not None else self._path(item.path or "")
            return load_input(
                path, item.role, name=path.name, origin=str(path), max_bytes=self.max_bytes
            )
        except (RequestError, NotAnImage) as exc:
            raise ToolError(f"{where}: {exc}") from None

    def _uri(self, uri: str) -> Path:
        return self.shelf.resolve(uri, self.owner)

    def _path(self, given: str) -> Path:
        if "\x00" in given:
            raise RequestError("a path with a NUL character")
        if self.shelf.scoped:  # HTTP: the caller's own images, as image_info reads them
            uri = self.shelf.uri(Path(given))
            if uri is None:
                raise RequestError(
                    "over HTTP an input path must be an image made for you, under the output "
                    "directory (or send the image as data)"
                )
            return self.shelf.resolve(uri, self.owner)
        try:
            real = Path(given).expanduser().resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise RequestError(
                f"{given}: cannot read it ({getattr(exc, 'strerror', exc)})"
            ) from None
        if not any(real.is_relative_to(root.resolve()) for root in self.roots):
            allowed = ", ".join(str(root) for root in self.roots)
            raise RequestError(
                f"{given}: outside the directories inputs may be read from ({allowed}; "
                "add one to mcp.input_roots), or send the image as data"
            )
        try:
            mode = real.stat().st_mode
        except OSError as exc:
            raise RequestError(f"{given}: cannot read it ({exc.strerror or exc})") from None
        if not stat.S_ISREG(mode):
            raise RequestError(f"{given}: not a regular file")
        return real

    def _decode(self, data: str, where: str) -> Path:
        """``data`` decoded into a file of the scratch directory, bounded before decoding."""
        text = _DATA_URL.sub("", data, count=1)
        if len(text) > 4 * -(-self.max_bytes // 3):
            raise RequestError(
                f"{len(text):,} characters of base64, more than the {self.max_bytes:,}-byte "
                "input allowed (mcp.input_max_bytes) can take"
            )
        if len(text) % 4:
            raise RequestError("not base64: its length is not a multiple of 4")
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="imagen-mcp-inputs-"))
        handle, name = tempfile.mkstemp(dir=self._scratch, suffix=".input")
        with os.fdopen(handle, "wb") as out:
            for start in range(0, len(text), _PIECE):
                try:
                    out.write(base64.b64decode(text[start : start + _PIECE], validate=True))
                except (binascii.Error, ValueError):
                    raise RequestError(
                        "not base64 (only A-Z, a-z, 0-9, + and /, padded with =)"
                    ) from None
        return Path(name)

"""Images as MCP sees them: ``imagen://images/PATH`` resources, and tool result content.

``PATH`` is the image's path relative to ``output.directory``. Over stdio the caller is
the local user: ``resources/list`` offers the newest images (those this server made
first, then the newest files in the output directory), and any image under the output
directory can be read by its URI. Over HTTP callers are kept apart: each lists and reads
only the images made for them (by this server, or by their queue jobs). Nothing outside
the directory is ever read: ``..``, absolute paths and symlinks that lead out are refused.

In a tool result an image is sent whole while it fits ``mcp.inline_max_bytes`` (what is
left of it after the images before); past that, as a smaller JPEG preview and a link to
its resource, or as the link alone.
"""

from __future__ import annotations

import base64
import heapq
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from mcp.shared.path_security import PathEscapeError, safe_join
from mcp_types import ContentBlock, ImageContent, ResourceLink

__all__ = ["MIME_TYPES", "URI_PREFIX", "URI_TEMPLATE", "ImageShelf", "Shown", "image_blocks"]

URI_PREFIX = "imagen://images/"
URI_TEMPLATE = "imagen://images/{+path}"
MIME_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
MAX_READ_BYTES = 64 * 1024 * 1024  # larger files are left to the client to open by path
_SCAN_LIMIT = 20_000  # directory entries looked at when listing recent images
_PREVIEW_SIDES = (1024, 768, 512, 384, 256)


class NotAnImage(LookupError):
    """A URI that names no readable image under the output directory; the message says why."""


@dataclass(frozen=True)
class Shown:
    """One image as a result shows it: ``inline`` (whole), ``preview`` or ``link``."""

    mode: str
    bytes: int


class ImageShelf:
    """The images the resources offer: recent ones to list, and those a caller may read.

    :param directory: ``output.directory``.
    :param keep: how many images ``resources/list`` offers.
    :param scoped: callers see only their own images (HTTP), not the whole directory.
    """

    _REMEMBERED = 10_000  # images whose owner is kept, newest first

    def __init__(self, directory: Path, keep: int, *, scoped: bool = False) -> None:
        self.directory = directory
        self.keep = keep
        self.scoped = scoped
        self._made: OrderedDict[Path, str] = OrderedDict()  # path → owner, newest last
        self._lock = threading.Lock()

    def uri(self, path: Path) -> str | None:
        """``imagen://images/…`` for ``path``, or None when it is not under the directory."""
        try:
            relative = path.resolve().relative_to(self.directory.resolve())
        except (ValueError, OSError):
            return None
        return URI_PREFIX + quote(relative.as_posix(), safe="/")

    def add(self, path: Path, owner: str) -> None:
        """Remember an image made for ``owner``, newest first in ``resources/list``."""
        path = path.resolve()
        with self._lock:
            self._made.pop(path, None)
            self._made[path] = owner
            while len(self._made) > self._REMEMBERED:
                self._made.popitem(last=False)

    def recent(self, owner: str) -> list[Path]:
        """Up to ``keep`` images ``owner`` may see, newest first.

        Scoped: the images made for ``owner``. Otherwise this server's images, then the
        newest files of the directory.
        """
        if self.keep == 0:
            return []
        with self._lock:
            made = [
                path
                for path, made_for in reversed(self._made.items())
                if not self.scoped or made_for == owner
            ]
        found = [path for path in made[: self.keep * 2] if path.is_file()][: self.keep]
        if len(found) < self.keep and not self.scoped:
            seen = set(found)
            found += [path for path in self._newest_files() if path not in seen]
        return found[: self.keep]

    def _newest_files(self) -> list[Path]:
        candidates: list[tuple[float, str]] = []
        looked = 0
        for root, dirs, files in os.walk(self.directory):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                looked += 1
                if Path(name).suffix.lower() in MIME_TYPES and not name.startswith("."):
                    path = os.path.join(root, name)
                    try:
                        candidates.append((os.stat(path).st_mtime, path))
                    except OSError:
                        continue
            if looked >= _SCAN_LIMIT:
                break
        return [Path(path) for _, path in heapq.nlargest(self.keep, candidates)]

    def resolve(self, uri: str, owner: str) -> Path:
        """The file ``uri`` names, if ``owner`` may read it.

        :raises NotAnImage: for a URI outside the scheme, a path leading out of the
            directory, a file that is not a PNG, JPEG or WebP, one that does not exist, or
            (scoped) one not made for ``owner``, which looks exactly like a missing one.
        """
        if not uri.startswith(URI_PREFIX):
            raise NotAnImage(f"not an imagen image URI: {uri}")
        relative = unquote(uri[len(URI_PREFIX) :])
        if not relative or "\x00" in relative:
            raise NotAnImage(f"no image path in {uri}")
        try:
            path = safe_join(self.directory, relative)
        except (PathEscapeError, ValueError, OSError):
            raise NotAnImage(f"{uri} leads outside the output directory") from None
        if path.suffix.lower() not in MIME_TYPES:
            raise NotAnImage(f"{uri} is not a PNG, JPEG or WebP image")
        if self.scoped:
            with self._lock:
                mine = self._made.get(path) == owner
            if not mine:
                raise NotAnImage(f"no image at {uri}")
        if not path.is_file():
            raise NotAnImage(f"no image at {uri}")
        return path

    def read(self, uri: str, owner: str) -> tuple[bytes, str]:
        """The bytes and MIME type of the image ``uri`` names (see :meth:`resolve`)."""
        path = self.resolve(uri, owner)
        size = path.stat().st_size
        if size > MAX_READ_BYTES:
            raise NotAnImage(f"{uri} is {size} bytes, too large to send: open {path} instead")
        return path.read_bytes(), MIME_TYPES[path.suffix.lower()]


def image_blocks(
    path: Path, mime_type: str, uri: str | None, budget: int, previews: bool
) -> tuple[list[ContentBlock], Shown]:
    """The content blocks that show the image at ``path`` within ``budget`` bytes.

    Blocking (reads the file, may draw a preview): call it in a worker thread.
    """
    size = path.stat().st_size
    if size <= budget:
        data = path.read_bytes()
        return [ImageContent(data=_b64(data), mime_type=mime_type)], Shown("inline", len(data))
    blocks: list[ContentBlock] = []
    shown = Shown("link", 0)
    if previews and budget > 0:
        preview = _preview(path, budget)
        if preview is not None:
            blocks.append(ImageContent(data=_b64(preview), mime_type="image/jpeg"))
            shown = Shown("preview", len(preview))
    if uri is not None:
        blocks.append(
            ResourceLink(
                name=path.name,
                uri=uri,
                mime_type=mime_type,
                size=size,
                description="the full image" + (" (the one above is a preview)" if blocks else ""),
            )
        )
    return blocks, shown


def _preview(path: Path, budget: int) -> bytes | None:
    """A JPEG of the image small enough for ``budget`` bytes, or None when none is."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            picture = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    for side in _PREVIEW_SIDES:
        copy = picture.copy()
        copy.thumbnail((side, side))
        buffer = io.BytesIO()
        copy.save(buffer, format="JPEG", quality=80, optimize=True)
        if buffer.tell() <= budget:
            return buffer.getvalue()
    return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")

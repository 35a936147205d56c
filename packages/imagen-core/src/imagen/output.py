"""Saving images: atomic, streamed, never overwriting, with metadata and a sidecar.

Each image is streamed into a hidden temporary file beside its final name, flushed to
disk, then linked into place under a name nobody has taken (``-1``, ``-2``, ... are added
on a clash), so a crash or a full disk never leaves a half-written image under a real name
and an existing file is never replaced.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import Any, BinaryIO

from imagen import secrets
from imagen.errors import ImagenError, OutputError, RequestError, TransientBackendError
from imagen.metadata import EXTENSIONS, copy_with_metadata, sniff
from imagen.metadata.reader import read_image_info, sidecar_path
from imagen.metadata.record import parameters_text
from imagen.metadata.streams import copy_rest

__all__ = ["SavedImage", "write_image"]

log = logging.getLogger("imagen")
RecordFor = Callable[[int | None, int | None, str], dict[str, Any]]
"""Given (width, height, MIME type) of the bytes: the image's record."""


@dataclass
class SavedImage:
    """An image on disk, with its record (the sidecar's content)."""

    path: Path
    mime_type: str
    record: dict[str, Any]
    sidecar: Path | None = None
    notes: list[str] = field(default_factory=list)

    def update_sidecar(self, **fields: Any) -> None:
        """Add ``fields`` to the record and rewrite the sidecar (if there is one) atomically."""
        self.record.update(secrets.redact_data(fields))
        if self.sidecar is not None:
            _write_json(self.sidecar, self.record, replace=True)

    def remove(self) -> None:
        """Delete the image and its sidecar (what is already gone is no error)."""
        for path in (self.path, self.sidecar):
            if path is not None:
                path.unlink(missing_ok=True)


def _read_source(stream: BinaryIO, size: int) -> bytes:
    """Read from a backend's image stream; a failure there is the upstream's, not the disk's."""
    try:
        return stream.read(size)
    except ImagenError:
        raise
    except Exception as exc:
        raise TransientBackendError(f"reading the image from the backend failed: {exc}") from exc


class _Prefixed:
    """A read-only stream that yields ``head`` and then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return _read_source(self._stream, size)
        if size < 0:
            data, self._head = self._head + _read_source(self._stream, -1), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        if len(data) < size:
            data += _read_source(self._stream, size - len(data))
        return data


def _size(path: Path) -> tuple[int | None, int | None]:
    try:
        info = read_image_info(path)
    except RequestError:
        return None, None
    return info.width, info.height


def _fresh_names(path: Path) -> Any:
    yield path
    for number in range(1, 10_000):
        yield path.with_name(f"{path.stem}-{number}{path.suffix}")
    raise OutputError(f"too many files named like {path}")


def _link_exclusive(source: Path, target: Path) -> bool:
    """Give ``source`` the name ``target`` if that name is free; False if it's taken."""
    try:
        os.link(source, target)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        # No hard links here (FAT, some network shares): claim the name, then replace it.
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        os.replace(source, target)
        return True
    os.unlink(source)
    return True


def _temporary(directory: Path, name: str) -> tuple[BinaryIO, Path]:
    """A new hidden file beside ``name``, created with the umask's permissions."""
    while True:
        path = directory / f".{name}.{token_hex(4)}.part"
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        return os.fdopen(handle, "wb"), path


def _write_json(path: Path, data: dict[str, Any], *, replace: bool) -> bool:
    """Write JSON atomically; with ``replace`` False, only if ``path`` is free."""
    out, temp = _temporary(path.parent, path.name)
    try:
        with out:
            out.write(json.dumps(data, indent=2, ensure_ascii=False).encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(temp, path)
            return True
        return _link_exclusive(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_image(
    stream: BinaryIO,
    declared_mime: str,
    target: Path,
    record_for: RecordFor,
    *,
    embed: bool = True,
    sidecar: bool = True,
) -> SavedImage:
    """Stream one image to ``target`` (or a free variant of it) with its metadata.

    :param target: the wanted path; its suffix is the format's extension.
    :param record_for: builds the record once the size and real format are known.
    :param embed: write the record into the file (PNG chunks, EXIF UserComment).
    :param sidecar: write the record beside the file as JSON.
    :raises OutputError: the directory can't be created or written, or the bytes are not
        the image they claim to be.
    """
    notes = []
    head = _read_source(stream, 16)
    mime = sniff(head) or declared_mime
    if mime != declared_mime:
        notes.append(f"the backend said {declared_mime} but sent {mime}; saved as {mime}")
    ext = EXTENSIONS.get(mime, target.suffix.lstrip(".") or "bin")
    if target.suffix.lstrip(".") != ext:
        target = target.with_suffix(f".{ext}")
    source = _Prefixed(head, stream)
    record: dict[str, Any] = {}

    def texts(width: int | None, height: int | None) -> tuple[str, str]:
        record.update(secrets.redact_data(record_for(width, height, mime)))
        return json.dumps(record, ensure_ascii=False), parameters_text(record)

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out, temp = _temporary(target.parent, target.name)
    except OSError as exc:
        raise OutputError(f"cannot write to {target.parent}: {exc.strerror}") from exc
    try:
        with out:
            size = copy_with_metadata(mime, source, out, texts) if embed else None  # type: ignore[arg-type]
            if size is None:
                copy_rest(source, out)  # type: ignore[arg-type]
            out.flush()
            os.fsync(out.fileno())
        if not record:
            texts(*_size(temp))
        for candidate in _fresh_names(target):
            if sidecar and sidecar_path(candidate).exists():
                continue
            if _link_exclusive(temp, candidate):
                target = candidate
                break
    except ValueError as exc:
        raise OutputError(f"the backend's image is not a valid {mime} file: {exc}") from exc
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        temp.unlink(missing_ok=True)

    saved = SavedImage(target, mime, record, notes=notes)
    if sidecar:
        path = sidecar_path(target)
        try:
            if not _write_json(path, record, replace=False):
                saved.notes.append(f"{path} appeared meanwhile; sidecar not written")
            else:
                saved.sidecar = path
        except OSError as exc:
            raise OutputError(
                f"saved {target}, but cannot write its sidecar: {exc.strerror}"
            ) from exc
    for note in saved.notes:
        log.warning("%s", note)
    return saved

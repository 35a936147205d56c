"""A multipart/form-data body read as a stream: text fields kept, file parts spooled to disk.

The stand-in's edits route reads uploads of up to 50 MB this way: each file part is hashed
and counted as it arrives and written to a temporary file (the image's size is read from
there, by its header), so the stand-in holds no upload whole beyond what the loopback
server's own recording keeps.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header

_CHUNK = 64 * 1024


@dataclass
class FilePart:
    """One file part as it arrived."""

    field: str
    filename: str | None
    content_type: str | None
    path: Path
    size: int = 0
    sha256: str = ""


@dataclass
class Form:
    """The parts of a form, in order; file parts' files are removed by :meth:`close`."""

    fields: list[tuple[str, str]] = field(default_factory=list)
    files: list[FilePart] = field(default_factory=list)

    def close(self) -> None:
        for part in self.files:
            part.path.unlink(missing_ok=True)


class FormError(ValueError):
    """The body is not a multipart form."""


def read_form(stream: BinaryIO, content_type: str, length: int, directory: Path) -> Form:
    """Parse ``length`` bytes of ``stream`` as the form ``content_type`` announces."""
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise FormError(content_type)
    form = Form()
    state: dict[str, Any] = {}

    def on_part_begin() -> None:
        state.update(headers={}, name=b"", value=b"", data=bytearray(), out=None, digest=None)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["name"].decode("latin-1").lower()] = state["value"]
        state["name"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state["headers"].get("content-disposition"))
        state["field"] = disposition.get(b"name", b"").decode()
        filename = disposition.get(b"filename")
        if filename is not None:
            handle = tempfile.NamedTemporaryFile(dir=directory, delete=False)  # noqa: SIM115 (closed at the part's end)
            ctype = state["headers"].get("content-type")
            part = FilePart(
                state["field"],
                filename.decode(errors="replace"),
                ctype.decode("latin-1") if ctype is not None else None,
                Path(handle.name),
            )
            form.files.append(part)
            state.update(out=handle, digest=hashlib.sha256(), part=part)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if state["out"] is None:
            state["data"] += chunk
            return
        state["out"].write(chunk)
        state["digest"].update(chunk)
        state["part"].size += len(chunk)

    def on_part_end() -> None:
        if state["out"] is None:
            form.fields.append((state["field"], state["data"].decode(errors="replace")))
            return
        state["out"].close()
        state["part"].sha256 = state["digest"].hexdigest()

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        left = length
        while left > 0:
            chunk = stream.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            parser.write(chunk)
        parser.finalize()
    except Exception as exc:
        form.close()
        raise FormError(str(exc)) from exc
    return form

"""Runs in flight: what ``imagen generate`` was doing, so that ``imagen resume`` can finish it.

When a backend that can re-attach reports the id of its upstream run (a ComfyUI prompt, a
Replicate prediction), ``imagen generate`` writes a small record of it to
``$XDG_DATA_HOME/imagen/runs/``: the run id, the backend, the request as given and as the
backend received it, where the images go. The record is removed when the run ends (its
images saved, a failure retrying won't fix, a cancellation). It stays when imagen could not
see the run through (the process was killed, the upstream stopped answering, the disk was
full): ``imagen resume`` follows the run from it, and never submits it again.

One file per record, written whole (a temporary file, then a rename), so concurrent imagen
processes never see half a record.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imagen.dirs import data_dir
from imagen.errors import (
    Cancelled,
    ImagenError,
    PermanentBackendError,
    RequestError,
)
from imagen.inputs import InputImage
from imagen.request import REQUEST_FIELDS, Request

__all__ = ["RunBook", "RunRecord", "RunRecordError", "may_go_on", "request_fields"]

_NAME = re.compile(r"^[0-9a-f]{32}\.json$")
_VERSION = 1


class RunRecordError(ValueError):
    """A record file that cannot be read back: unreadable, not JSON, or not a record."""


def request_fields(request: Request) -> dict[str, Any]:
    """A request as plain JSON-ready fields (``Request(**fields)`` makes it again)."""
    fields = {name: getattr(request, name) for name in REQUEST_FIELDS}
    fields["style"] = request.style
    fields["options"] = dict(request.options)
    fields["inputs"] = [item.record() for item in request.inputs]
    return fields


def _request(fields: Any, what: str) -> Request:
    if not isinstance(fields, dict):
        raise RunRecordError(f"{what} is not a mapping")
    allowed = {*REQUEST_FIELDS, "style", "options", "inputs"}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise RunRecordError(f"{what} has unknown fields: {', '.join(unknown)}")
    if "options" in fields and not isinstance(fields["options"], dict):
        raise RunRecordError(f"{what}.options is not a mapping")
    if fields.get("style") is not None and not isinstance(fields["style"], str):
        raise RunRecordError(f"{what}.style is not a string")
    if not isinstance(fields.get("negative_prompt", ""), str):
        raise RunRecordError(f"{what}.negative_prompt is not a string")
    try:
        inputs = [InputImage.from_record(item) for item in fields.get("inputs") or []]
        return Request(**{**fields, "inputs": tuple(inputs)})
    except (RequestError, TypeError) as exc:
        raise RunRecordError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class RunRecord:
    """One run in flight.

    :param key: the record's own id (one per ``imagen generate``), its file name.
    :param run_id: the upstream run id the backend reported (updated as it reports more).
    :param backend: the backend instance's name; :param backend_type: its type.
    :param config: the config file the run was started with, if any.
    :param request: the request as given, with the seed imagen chose.
    :param styled: the request as the backend received it (its style applied).
    :param output_dir: where the images go (absolute).
    :param preview: the ``--preview`` choice, None for the config's.
    :param explicit: the request fields the user set by flag (warned about when ignored).
    :param started: when the run was started (UTC).
    :param pid: the process following it; :param process_start: that process's start
        time as the OS counts it, so a reused pid is not taken for it.
    """

    key: str
    run_id: str
    backend: str
    backend_type: str
    config: str | None
    request: Request
    styled: Request
    output_dir: str
    preview: bool | None
    explicit: tuple[str, ...]
    started: datetime
    pid: int
    host: str
    process_start: str | None = None

    @classmethod
    def new(cls, **fields: Any) -> RunRecord:
        """A record for this process, started now, under a fresh key."""
        fields.setdefault("key", uuid.uuid4().hex)
        fields.setdefault("started", datetime.now(UTC))
        return cls(
            **fields,
            pid=os.getpid(),
            host=socket.gethostname(),
            process_start=_started(os.getpid()),
        )

    def following(self) -> RunRecord:
        """The record, followed by this process from now on."""
        return replace(
            self, pid=os.getpid(), host=socket.gethostname(), process_start=_started(os.getpid())
        )

    def with_run_id(self, run_id: str) -> RunRecord:
        return replace(self, run_id=run_id)

    def followed_elsewhere(self) -> bool:
        """True while another live process on this machine is following the run."""
        if self.host != socket.gethostname() or self.pid == os.getpid():
            return False
        start = _started(self.pid)
        if start is not None and self.process_start is not None:
            return start == self.process_start
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        except OSError:
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "key": self.key,
            "run_id": self.run_id,
            "backend": self.backend,
            "backend_type": self.backend_type,
            "config": self.config,
            "request": request_fields(self.request),
            "styled": request_fields(self.styled),
            "output_dir": self.output_dir,
            "preview": self.preview,
            "explicit": list(self.explicit),
            "started": self.started.isoformat(),
            "pid": self.pid,
            "host": self.host,
            "process_start": self.process_start,
        }

    @classmethod
    def from_json(cls, data: Any) -> RunRecord:
        """Read a record back; every field is checked (the file may have been edited)."""
        if not isinstance(data, dict):
            raise RunRecordError("not a JSON object")
        if data.get("version") != _VERSION:
            raise RunRecordError(f"unknown record version {data.get('version')!r}")
        text = {
            name: data.get(name)
            for name in ("key", "run_id", "backend", "backend_type", "output_dir", "host")
        }
        for name, value in text.items():
            if not isinstance(value, str) or not value:
                raise RunRecordError(f"{name} is missing or not a string")
        if not re.fullmatch(r"[0-9a-f]{32}", text["key"]):
            raise RunRecordError("key is not a record key")
        for name in ("config", "process_start"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise RunRecordError(f"{name} is not a string")
        if data.get("preview") is not None and not isinstance(data["preview"], bool):
            raise RunRecordError("preview is not true, false or null")
        explicit = data.get("explicit", [])
        if not isinstance(explicit, list) or not all(isinstance(e, str) for e in explicit):
            raise RunRecordError("explicit is not a list of field names")
        pid = data.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise RunRecordError("pid is not a process id")
        try:
            started = datetime.fromisoformat(str(data.get("started")))
        except ValueError:
            raise RunRecordError("started is not a time") from None
        if started.tzinfo is None:
            raise RunRecordError("started has no time zone")
        request = _request(data.get("request"), "request")
        styled = _request(data.get("styled"), "styled")
        if styled.seed != request.seed:
            raise RunRecordError("request and styled disagree on the seed")
        return cls(
            key=text["key"],
            run_id=text["run_id"],
            backend=text["backend"],
            backend_type=text["backend_type"],
            config=data.get("config"),
            request=request,
            styled=styled,
            output_dir=text["output_dir"],
            preview=data.get("preview"),
            explicit=tuple(explicit),
            started=started,
            pid=pid,
            host=text["host"],
            process_start=data.get("process_start"),
        )


def _started(pid: int) -> str | None:
    """A process's start time as Linux counts it (clock ticks since boot), if it can tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of stat, counted from 1


class RunBook:
    """The records of runs in flight, one JSON file each under ``directory``.

    :param directory: where the records live; ``$XDG_DATA_HOME/imagen/runs`` by default.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or data_dir() / "runs"
        self.problems: list[str] = []
        """Record files that could not be read, each as ``path: reason``, after :meth:`records`."""

    def save(self, record: RunRecord) -> None:
        """Write (or replace) ``record`` whole; readable by this user only."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = json.dumps(record.to_json(), indent=2, ensure_ascii=False)
        handle, temporary = tempfile.mkstemp(prefix=".run-", dir=self.directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temporary, self.directory / f"{record.key}.json")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def forget(self, record: RunRecord) -> None:
        """Remove ``record``; nothing happens when it is already gone."""
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{record.key}.json").unlink()

    def records(self) -> list[RunRecord]:
        """Every readable record, the most recently started first."""
        self.problems = []
        found = []
        for path in self._files():
            try:
                found.append(RunRecord.from_json(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
                self.problems.append(f"{path}: {exc}")
        return sorted(found, key=lambda record: record.started, reverse=True)

    def find(self, run_id: str) -> RunRecord | None:
        """The record of ``run_id``: the full id, or a prefix that names one run only.

        :raises RunRecordError: when the prefix fits several runs (they are named).
        """
        records = self.records()
        exact = [record for record in records if record.run_id == run_id]
        if exact:
            return exact[0]
        matches = [record for record in records if run_id and record.run_id.startswith(run_id)]
        if len(matches) > 1:
            ids = ", ".join(record.run_id for record in matches)
            raise RunRecordError(f"{run_id!r} fits several runs: {ids}")
        return matches[0] if matches else None

    def _files(self) -> Iterator[Path]:
        try:
            entries = list(self.directory.iterdir())
        except FileNotFoundError:
            return
        yield from sorted(path for path in entries if _NAME.match(path.name))


def may_go_on(error: BaseException | None) -> bool:
    """Whether a run that ended in ``error`` may still finish upstream (its record stays).

    Saved (no error), failed for good, cancelled or stopped with a second Ctrl-C: the run is
    over. Anything else (the upstream unreachable, a timeout, an image that could not be
    written, a bug) leaves a run that ``imagen resume`` may still see through.
    """
    if error is None or isinstance(error, Cancelled | PermanentBackendError | KeyboardInterrupt):
        return False
    return isinstance(error, ImagenError | Exception)

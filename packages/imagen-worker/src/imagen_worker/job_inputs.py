"""A job's input images: references in its row, checked, fetched and checked again.

A job row never holds image bytes. ``jobs.inputs`` is a JSON array of references
(migration 0006 checks their shape, and so does :func:`check_refs`):

- ``{"role": "image", "upload": "<sha256>", "name": "photo.png"}``: an image sent through
  ``imagen serve`` (``POST /v1/images/edits``), kept in the inputs directory
  (``serve.inputs_dir``) in a folder of its owner's, under its SHA-256;
- ``{"role": "mask", "object": "imagen-inputs/<owner>/m.png", "sha256": "…"}``: an object
  the owner uploaded to their own folder of the cloud bucket (``cloud.bucket``).

Both name only the owner's own images: an upload's path is built from the row's owner and
a hex digest, and an object's folder must be the owner's. The worker fetches each into the
job's temporary directory (objects) or reads it in place (uploads), checks its bytes as
:func:`imagen.inputs.load_input` checks any input, and compares its SHA-256 with the one
the row names.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagen.errors import RequestError
from imagen.inputs import INPUT_ROLES, MAX_INPUT_BYTES, MAX_INPUTS, check_inputs, load_input
from imagen_worker.submission import JobRejected

if TYPE_CHECKING:
    from imagen.config import Config
    from imagen.inputs import InputImage
    from imagen.request import Request

__all__ = [
    "OBJECT_FOLDER",
    "check_refs",
    "check_strength",
    "fetch_inputs",
    "forget_uploads",
    "inputs_dir",
    "keep_uploads",
    "prune_uploads",
    "upload_path",
]

OBJECT_FOLDER = "imagen-inputs"
"""The bucket folder whose ``<owner>/`` sub-folder each owner may upload inputs to."""
_KEYS = frozenset({"role", "upload", "object", "name", "sha256"})
_DIGEST = re.compile(r"[0-9a-f]{64}")
_BAD_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)|//|\\")
_MAX_NAME = 255
_MAX_OBJECT = 1024


def check_refs(value: Any, owner: str | None = None) -> None:
    """Check ``jobs.inputs`` as migration 0006 does; JobRejected naming the entry at fault.

    :param owner: the job's owner, whose folder an object must be in (None: not known
        here, the database checks it).
    """
    if not isinstance(value, list):
        raise JobRejected("inputs", "must be a list of input image references")
    if not 1 <= len(value) <= MAX_INPUTS:
        raise JobRejected("inputs", f"must name 1 to {MAX_INPUTS} images, not {len(value)}")
    if sum(1 for ref in value if isinstance(ref, dict) and ref.get("role") == "mask") > 1:
        raise JobRejected("inputs", "more than one mask")
    for index, ref in enumerate(value):
        where = f"inputs[{index}]"
        if not isinstance(ref, dict):
            raise JobRejected(where, "must be an object")
        unknown = sorted(set(ref) - _KEYS)
        if unknown:
            known = ", ".join(sorted(_KEYS))
            raise JobRejected(where, f"unknown key {unknown[0]!r} (known: {known})")
        if ref.get("role") not in INPUT_ROLES:
            raise JobRejected(f"{where}.role", f"must be one of {', '.join(INPUT_ROLES)}")
        if ("upload" in ref) == ("object" in ref):
            raise JobRejected(where, 'must name either an "upload" or an "object"')
        for key in ("upload", "sha256"):
            if key in ref and not (isinstance(ref[key], str) and _DIGEST.fullmatch(ref[key])):
                raise JobRejected(f"{where}.{key}", "must be a SHA-256 in lowercase hex")
        name = ref.get("name")
        if "name" in ref and not (
            isinstance(name, str) and len(name) <= _MAX_NAME and "\x00" not in name
        ):
            raise JobRejected(f"{where}.name", f"must be text of at most {_MAX_NAME} characters")
        if "object" in ref:
            _check_object(ref["object"], owner, f"{where}.object")


def _check_object(path: Any, owner: str | None, where: str) -> None:
    if not isinstance(path, str) or len(path) > _MAX_OBJECT:
        raise JobRejected(where, f"must be a path of at most {_MAX_OBJECT} characters")
    if _BAD_SEGMENT.search(path) or "\x00" in path:
        raise JobRejected(where, "must not hold '.', '..' or empty segments")
    if owner is not None:
        folder = f"{OBJECT_FOLDER}/{owner}/"
        if "/" in owner or not path.startswith(folder):
            raise JobRejected(where, f"must be in the owner's own folder {folder}")


def check_strength(value: Any) -> None:
    """``jobs.strength``: a number from 0 to 1, or None."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise JobRejected("strength", f"must be a number from 0 to 1, not {value!r}")


def inputs_dir(config: Config) -> Path:
    """Where ``imagen serve`` keeps uploaded inputs for the workers (``serve.inputs_dir``)."""
    from imagen.dirs import data_dir, expand_path
    from imagen.serve_settings import SERVE

    configured = config.section_values("serve", SERVE)["inputs_dir"]
    return expand_path(configured) if configured else data_dir() / "inputs"


def upload_path(directory: Path, owner: str, digest: str) -> Path:
    """The file of ``owner``'s upload ``digest``: a folder per owner, named by a hash of it."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not a SHA-256: {digest!r}")
    folder = hashlib.sha256(owner.encode()).hexdigest()[:32]
    return directory / folder / digest


def keep_uploads(directory: Path, owner: str, images: Sequence[InputImage]) -> list[Path]:
    """Move checked uploads into ``owner``'s folder under their digests.

    Each file must be on the same file system as ``directory`` (its ``incoming`` folder is).
    The same bytes uploaded again replace the file with an equal one: a job queued with the
    earlier upload still finds it.

    :returns: the files this call added (not those it replaced), for :func:`forget_uploads`
        when the job they were kept for is not queued after all.
    """
    added: list[Path] = []
    try:
        for image in images:
            target = upload_path(directory, owner, image.sha256)
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            existed = target.is_file()
            os.replace(image.path, target)
            if not existed:
                added.append(target)
    except BaseException:  # a job that names only some of its inputs is never queued
        forget_uploads(added)
        raise
    return added


def forget_uploads(paths: Iterable[Path]) -> None:
    """Remove uploads :func:`keep_uploads` added for a job that was not queued."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def prune_uploads(directory: Path, named: set[tuple[str, str]], older_than_s: float) -> int:
    """Remove uploads no job names any more, and leftovers of cut-short uploads; how many.

    :param named: ``(owner, digest)`` of every upload a job row still names.
    :param older_than_s: only files untouched for this long go: an upload being queued
        right now is on disk a moment before its job is.
    """
    import time

    keep = {upload_path(directory, owner, digest) for owner, digest in named}
    cutoff = time.time() - older_than_s
    removed = 0
    for path in directory.glob("*/*") if directory.is_dir() else ():
        try:
            if path in keep or not path.is_file() or path.stat().st_mtime > cutoff:
                continue
            path.unlink()
        except OSError:  # gone meanwhile, or not ours to remove: left for the next prune
            continue
        removed += 1
    return removed


def fetch_inputs(
    config: Config, row: Mapping[str, Any], request: Request, directory: Path | None
) -> Request:
    """``request`` with the row's input images, fetched and checked; unchanged without any.

    :param directory: where objects from the bucket are downloaded to (the caller removes
        it when the job ends); None only for a row without inputs.
    :raises RequestError: naming the input (``job N inputs[i]``) that cannot be used.
    """
    refs = row.get("inputs")
    strength = row.get("strength")
    if not refs:
        return request if strength is None else replace(request, strength=strength)
    owner = str(row.get("owner") or "")
    check_refs(refs, owner)
    job = f"job {row.get('id')}"
    if directory is None:
        raise ValueError("a row with inputs needs a directory to fetch them to")
    uploads = inputs_dir(config)
    store = None
    images: list[InputImage] = []
    try:
        for index, ref in enumerate(refs):
            label = f"{job} inputs[{index}]"
            if "upload" in ref:
                path = upload_path(uploads, owner, ref["upload"])
                expected = ref["upload"]
            else:
                if store is None:
                    store = _open_store(config, label)
                path = directory / f"input-{index}"
                _download(store, ref["object"], path, label)
                expected = ref.get("sha256")
            name = ref.get("name") or ref.get("object", "").rsplit("/", 1)[-1] or f"input-{index}"
            image = _load(path, ref["role"], f"{label} ({name})", name)
            if expected is not None and image.sha256 != expected:
                raise RequestError(
                    f"{label} ({name}): its bytes are not the ones the job names "
                    f"(SHA-256 {image.sha256[:12]}…, not {expected[:12]}…)"
                )
            images.append(image)
    finally:
        if store is not None:
            store.close()
    try:
        check_inputs(images)
    except RequestError as exc:
        raise RequestError(f"{job} inputs: {exc}") from None
    return replace(request, inputs=tuple(images), strength=strength)


def _load(path: Path, role: str, label: str, name: str) -> InputImage:
    if not path.is_file():
        raise RequestError(
            f"{label}: not in this worker's inputs directory (imagen serve keeps uploads in "
            "serve.inputs_dir: give its workers the same directory)"
        )
    return replace(load_input(path, role, name=label), name=name)


def _download(store: Any, object_path: str, path: Path, label: str) -> None:
    from imagen.cloud.errors import CloudError
    from imagen.errors import TransientBackendError

    try:
        store.download(object_path, path, MAX_INPUT_BYTES)
    except CloudError as exc:
        if exc.transient:
            raise TransientBackendError(f"{label}: {exc}") from None
        raise RequestError(f"{label}: {exc}") from None


def _open_store(config: Config, label: str) -> Any:
    from imagen.cloud.settings import read_cloud
    from imagen.cloud.store import CloudStore

    settings = read_cloud(config)
    if settings is None:
        raise RequestError(
            f"{label}: names an object of the cloud bucket, and this worker has no cloud: "
            "section to fetch it with"
        )
    return CloudStore(settings)

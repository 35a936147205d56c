"""File naming: the ``output.naming`` template and its placeholders."""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

__all__ = ["PLACEHOLDERS", "NamingTemplate", "slugify"]

PLACEHOLDERS = {
    "date": "local date, 2026-11-25 (or a strftime format: {date:%Y/%m})",
    "time": "local time, 142501 (or a strftime format: {time:%H-%M})",
    "slug": "the prompt: lower-case ASCII words joined by hyphens, at most 40 characters",
    "seed": "the seed",
    "backend": "the backend instance's name",
    "ext": "the extension of the image's format: png, jpg or webp",
    "index": "the image's number within the request, from 1 (for count > 1)",
}
SLUG_LENGTH = 40
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slugify(text: str, length: int = SLUG_LENGTH) -> str:
    """The prompt as a file-name fragment: ``"A Cat, in Space!"`` → ``"a-cat-in-space"``.

    Accented letters lose their accents; other non-ASCII characters are dropped. An empty
    result becomes ``"image"``.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    slug = "-".join(words)[:length].strip("-")
    return slug or "image"


class _Stamp:
    """A date or time that formats with strftime: ``{date}`` or ``{date:%Y/%m}``."""

    def __init__(self, when: datetime, default: str) -> None:
        self.when = when
        self.default = default

    def __format__(self, spec: str) -> str:
        return self.when.strftime(spec or self.default)


def _safe(value: str) -> str:
    """A value that cannot change directories when put into a path."""
    return _UNSAFE.sub("-", value).strip(".-") or "x"


@dataclass(frozen=True)
class NamingTemplate:
    """A validated ``output.naming`` template.

    :raises ValueError: on an unknown placeholder, or a template that would write outside
        the output directory (absolute, or with ``..``).
    """

    template: str
    extra: tuple[str, ...] = ()
    """Placeholders this template may use beyond :data:`PLACEHOLDERS` (``{owner}``)."""

    def __post_init__(self) -> None:
        if not self.template.strip():
            raise ValueError("the naming template is empty")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None]
        except ValueError as exc:
            raise ValueError(f"malformed template: {exc}") from exc
        for name in fields:
            if name not in PLACEHOLDERS and name not in self.extra:
                known = ", ".join("{" + p + "}" for p in (*PLACEHOLDERS, *self.extra))
                raise ValueError(f"unknown placeholder {{{name}}} (known: {known})")
        try:
            sample = PurePosixPath(self._format(self._sample()))
        except (ValueError, KeyError, IndexError) as exc:
            raise ValueError(f"malformed template: {exc}") from exc
        if self.template.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", self.template):
            raise ValueError("must be relative to the output directory")
        if ".." in sample.parts or "\\" in self.template:
            raise ValueError("must not leave the output directory (no '..' or '\\')")
        if self.template.endswith("/"):
            raise ValueError("must end in a file name, not a directory")

    @property
    def uses_index(self) -> bool:
        return "{index" in self.template

    def render(
        self,
        *,
        when: datetime,
        prompt: str,
        seed: int | None,
        backend: str,
        ext: str,
        index: int,
        **extra: str,
    ) -> PurePosixPath:
        """The relative path of one image, with the right extension for its format."""
        values = {
            **{name: _safe(extra.get(name) or "none") for name in self.extra},
            "date": _Stamp(when, "%Y-%m-%d"),
            "time": _Stamp(when, "%H%M%S"),
            "slug": slugify(prompt),
            "seed": 0 if seed is None else seed,
            "backend": _safe(backend),
            "ext": ext,
            "index": index,
        }
        path = PurePosixPath(self._format(values))
        if "{ext" not in self.template and path.suffix.lower().lstrip(".") != ext:
            # A literal ".png" for a backend that sent JPEG would mislabel the file.
            path = (
                path.with_suffix(f".{ext}") if path.suffix else path.with_name(f"{path.name}.{ext}")
            )
        return path

    def _format(self, values: dict[str, object]) -> str:
        return self.template.format(**values)

    def _sample(self) -> dict[str, object]:
        when = datetime(2000, 1, 1)
        return {
            **{name: "x" for name in self.extra},
            "date": _Stamp(when, "%Y-%m-%d"),
            "time": _Stamp(when, "%H%M%S"),
            "slug": "s",
            "seed": 1,
            "backend": "b",
            "ext": "png",
            "index": 1,
        }

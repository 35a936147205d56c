"""The ``output:`` section: where and how images are saved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagen.dirs import expand_path
from imagen.naming import NamingTemplate
from imagen.sections import Section, SectionData, Setting

__all__ = ["OUTPUT", "OUTPUT_SECTION", "OutputSettings"]

OUTPUT: dict[str, Setting] = {
    "directory": Setting(
        str,
        "~/Pictures/imagen",
        "where images are saved; `~` and `$VARS` are expanded; created on demand",
    ),
    "naming": Setting(
        str,
        "{date}-{slug}-{seed}.{ext}",
        "file name template, relative to the directory; may contain `/` for subdirectories",
    ),
    "write_metadata_json": Setting(bool, True, "write a sidecar JSON beside each image"),
    "embed_metadata": Setting(
        bool,
        True,
        "write the parameters into the image file itself "
        "(PNG text chunks; EXIF UserComment for JPEG and WebP)",
    ),
}


@dataclass(frozen=True)
class OutputSettings:
    """The ``output:`` section."""

    directory: Path
    naming: NamingTemplate
    write_metadata_json: bool = True
    embed_metadata: bool = True


def _parse(data: SectionData) -> OutputSettings:
    values = data.values
    try:
        directory = expand_path(values["directory"], data.environ)
    except ValueError as exc:
        raise data.error(str(exc), "directory") from None
    if not directory.is_absolute() and data.source.file is not None:
        directory = data.source.file.parent / directory
    try:
        naming = NamingTemplate(values["naming"])
    except ValueError as exc:
        raise data.error(str(exc), "naming") from None
    return OutputSettings(
        directory=directory,
        naming=naming,
        write_metadata_json=values["write_metadata_json"],
        embed_metadata=values["embed_metadata"],
    )


def _show(settings: OutputSettings) -> dict[str, Any]:
    return {
        "directory": str(settings.directory),
        "naming": settings.naming.template,
        "write_metadata_json": settings.write_metadata_json,
        "embed_metadata": settings.embed_metadata,
    }


OUTPUT_SECTION = Section(
    "output", "where and how images are saved", OUTPUT, parse=_parse, show=_show
)

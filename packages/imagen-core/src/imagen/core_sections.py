"""imagen-core's own config sections, offered through the ``imagen_config_sections`` hook.

Registered through imagen-core's ``imagen`` entry point like every plugin, so one path
finds every section. Each section is declared in the module that reads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imagen.plugins import hookimpl

if TYPE_CHECKING:
    from imagen.sections import Section


@hookimpl
def imagen_config_sections() -> list[Section]:
    from imagen.cloud.settings import CLOUD_SECTION
    from imagen.history.settings import HISTORY_SECTION
    from imagen.output_settings import OUTPUT_SECTION
    from imagen.preview import PREVIEW_SECTION
    from imagen.serve_settings import SERVE_SECTION
    from imagen.styles import STYLES_SECTION
    from imagen.usage.settings import USAGE_SECTION

    return [
        OUTPUT_SECTION,
        STYLES_SECTION,
        PREVIEW_SECTION,
        USAGE_SECTION,
        CLOUD_SECTION,
        SERVE_SECTION,
        HISTORY_SECTION,
    ]

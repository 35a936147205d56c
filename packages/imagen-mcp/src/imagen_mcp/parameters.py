"""The arguments ``generate_image`` and ``submit_job`` share, as annotated types.

Their bounds and descriptions become the tools' JSON schemas; the configured backend and
style names become enums, so a model picks from what exists.
"""

from types import SimpleNamespace
from typing import Annotated, Any, Literal

from pydantic import Field

from imagen.config import Config
from imagen.inputs import MAX_INPUTS
from imagen.pipeline import SEED_LIMIT
from imagen_mcp.inputs import ImageInput
from imagen_mcp.settings import McpSettings

__all__ = ["MAX_OPTIONS", "MAX_PROMPT", "request_parameters"]

MAX_PROMPT = 8000  # characters; no upstream takes more
MAX_OPTIONS = 32


def _names(values: list[str], what: str) -> Any:
    """An enum of ``values`` for the schema, or a plain string when there are none."""
    if not values:
        return Annotated[str, Field(description=f"no {what} are configured")]
    return Literal[tuple(values)]  # type: ignore[valid-type]


def request_parameters(config: Config, settings: McpSettings) -> SimpleNamespace:
    """The annotated parameters ``generate_image``, ``edit_image`` and ``submit_job`` share."""
    backends = _names(list(config.backends), "backends")
    styles = _names(list(config.styles), "styles")
    return SimpleNamespace(
        prompt=Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_PROMPT,
                pattern=r"\S",
                description="What the image shows, in plain words; the more concrete the "
                "better (subject, setting, light, medium).",
            ),
        ],
        negative_prompt=Annotated[
            str,
            Field(
                max_length=MAX_PROMPT,
                description="What to keep out of the image. Some backends ignore it (the "
                "result says so).",
            ),
        ],
        size=Annotated[
            str | None,
            Field(
                pattern=r"^\s*[0-9]{1,5}\s*[xX]\s*[0-9]{1,5}\s*$",
                description="WIDTHxHEIGHT in pixels, such as 1024x1024 or 1216x832. Omit it "
                "for the style's or the backend's default. Each backend has its own bounds.",
            ),
        ],
        count=Annotated[
            int,
            Field(
                ge=1,
                le=settings.max_count,
                description=f"How many images to make, 1 to {settings.max_count}.",
            ),
        ],
        seed=Annotated[
            int | None,
            Field(
                ge=0,
                lt=SEED_LIMIT,
                description="Seed for the sampler; omit for a random one (it is returned). "
                "The same seed and prompt make the same image again on reproducible backends.",
            ),
        ],
        backend=Annotated[
            backends | None,
            Field(
                description="Which configured backend makes it (see list_backends); omit "
                f'for the default, "{config.default_backend}".'
            ),
        ],
        style=Annotated[
            styles | None,
            Field(description="A style preset to apply (see list_styles)."),
        ],
        steps=Annotated[
            int | None,
            Field(ge=1, le=1000, description="Sampling steps, for backends that have them."),
        ],
        options=Annotated[
            dict[
                Annotated[str, Field(min_length=1, max_length=64)],
                str | int | Annotated[float, Field(allow_inf_nan=False)] | bool,
            ]
            | None,
            Field(
                max_length=MAX_OPTIONS,
                description="Backend-specific options, only those the backend documents "
                "(the built-in mock backend takes delay, fail and format).",
            ),
        ],
        inputs=Annotated[
            list[ImageInput] | None,
            Field(
                max_length=MAX_INPUTS,
                description="Input images, for backends that take them (list_backends shows "
                "which, and how many of each role): an image to edit or start from, "
                "references, a mask. Each is a path on the server, base64 data, or an "
                "imagen://images/ URI. Omit for an image from the prompt alone.",
            ),
        ],
        image=Annotated[
            ImageInput,
            Field(
                description="The image to edit: exactly one of path (on the server), data "
                "(base64) or uri (imagen://images/, an image made earlier). Its role is "
                "image whatever it says."
            ),
        ],
        mask=Annotated[
            ImageInput | None,
            Field(
                description="Where the image may change: white (or transparent) to repaint, "
                "black to keep; the same size as the image. Omit to let the whole image "
                "change."
            ),
        ],
        strength=Annotated[
            float | None,
            Field(
                ge=0,
                le=1,
                allow_inf_nan=False,
                description="How far the result may move from the input image: 0 keeps it, "
                "1 ignores it; omit for the backend's default. Backends that take none list "
                "it as ignored.",
            ),
        ],
    )

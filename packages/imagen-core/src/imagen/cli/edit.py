"""``imagen edit IMAGE PROMPT``: ``imagen generate PROMPT --image IMAGE``, shorter."""

from __future__ import annotations

from typing import Any

import click

from imagen.cli.generate import generate

__all__ = ["edit"]


def _edit(ctx: click.Context, /, image: str, images: tuple[str, ...], **kwargs: Any) -> Any:
    return ctx.invoke(generate, images=(image, *images), **kwargs)


edit = click.Command(
    "edit",
    callback=click.pass_context(_edit),
    params=[
        click.Argument(["image"]),
        *generate.params,
    ],
    help=(
        'Edit IMAGE as PROMPT says ("-" reads the image from standard input).\n\n'
        "The same as `imagen generate PROMPT --image IMAGE`, with every option of generate: "
        "--mask limits the edit to where the mask is white (or transparent), --strength sets "
        "how far the result may move from IMAGE, --reference adds images to follow."
    ),
    short_help="Edit an image as a prompt says.",
    context_settings=generate.context_settings,
)

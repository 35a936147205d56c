"""What ``list_backends``, ``list_styles`` and ``image_info`` answer: plain data, typed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from imagen.backend import Backend
from imagen.config import Config
from imagen.errors import ImagenError
from imagen.pipeline import BackendPool
from imagen.request import Request

__all__ = [
    "BackendInfo",
    "Backends",
    "SharedPool",
    "StyleInfo",
    "Styles",
    "describe_backends",
    "describe_styles",
    "image_facts",
]


class InputsTaken(BaseModel):
    """The input images a backend takes; all zero or false: none."""

    images: int = Field(description="how many inputs of role image (to edit, or start from)")
    references: int = Field(description="how many inputs of role reference")
    mask: bool = Field(description="whether it takes a mask")
    strength: bool = Field(description="whether it honours strength")


class BackendInfo(BaseModel):
    """One configured backend instance."""

    name: str = Field(description="what to pass as `backend` to generate_image")
    type: str = Field(description="the backend type (mock, comfyui, replicate, openai, ...)")
    default: bool = Field(description="used when generate_image is given no backend")
    description: str = Field(description="what the backend type is")
    ready: bool = Field(description="it could be set up; false: see `problem`")
    problem: str | None = Field(None, description="why it cannot be used, when it cannot")
    reproducible: bool | None = Field(None, description="the same seed gives the same pixels again")
    usd_per_image: float | None = Field(
        None, description="the estimated price of one image, when the backend knows it"
    )
    inputs: InputsTaken | None = Field(
        None, description="the input images it takes (edit_image, generate_image's inputs)"
    )


class Backends(BaseModel):
    backends: list[BackendInfo]


class StyleInfo(BaseModel):
    """One style preset."""

    name: str = Field(description="what to pass as `style` to generate_image")
    description: str
    adds_to_prompt: str = Field(description="the text appended to the prompt")
    adds_to_negative_prompt: str
    size: str | None = Field(None, description="its default size, WIDTHxHEIGHT")
    steps: int | None = None


class Styles(BaseModel):
    styles: list[StyleInfo]


class SharedPool(BackendPool):
    """Built backends shared by every call of the server (calls run in threads at once)."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._lock = threading.Lock()

    def get(self, name: str | None = None) -> Backend:
        with self._lock:
            return super().get(name)

    def close(self) -> None:
        with self._lock:
            super().close()


def describe_backends(config: Config, pool: SharedPool) -> Backends:
    """Every configured instance, built to see whether it can be used (no network calls)."""
    from imagen import secrets
    from imagen.registry import backend_types

    types = backend_types()
    infos = []
    for name, slice_ in config.backends.items():
        kind = types.get(slice_.type)
        info: dict[str, Any] = {
            "name": name,
            "type": slice_.type,
            "default": name == config.default_backend,
            "description": kind.summary if kind else "",
        }
        try:
            backend = pool.get(name)
        except ImagenError as exc:
            info.update(ready=False, problem=secrets.redact(exc.message))
        else:
            price = backend.estimate_cost(Request(prompt="price"))
            taken = backend.input_support()
            info.update(
                ready=True,
                reproducible=backend.reproducible,
                usd_per_image=price,
                inputs=InputsTaken(
                    images=taken.images,
                    references=taken.references,
                    mask=taken.mask,
                    strength=taken.strength,
                ),
            )
        infos.append(BackendInfo(**info))
    return Backends(backends=infos)


def describe_styles(config: Config) -> Styles:
    return Styles(
        styles=[
            StyleInfo(
                name=style.name,
                description=style.description,
                adds_to_prompt=style.suffix,
                adds_to_negative_prompt=style.negative_suffix,
                size=f"{style.width}x{style.height}" if style.width and style.height else None,
                steps=style.steps,
            )
            for style in config.styles.values()
        ]
    )


def image_facts(path: Path) -> dict[str, Any]:
    """How the image at ``path`` was made, as ``imagen info --json`` shows it (no raw text)."""
    from imagen.metadata.reader import read_image_info

    data = read_image_info(path).to_dict()
    data.pop("raw", None)  # a whole ComfyUI graph says little to a model and costs a lot
    return data

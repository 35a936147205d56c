"""What a backend can tell of its upstream without generating: its models, and that it answers.

Backends return :class:`ModelInfo` from :meth:`~imagen.Backend.models` (``imagen models``)
and a one-line description from :meth:`~imagen.Backend.probe` (``imagen config check
--online``). Both call the network, and neither may start anything billable.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelInfo"]


@dataclass(frozen=True)
class ModelInfo:
    """One thing a backend can use, as its upstream lists it.

    :param name: what to write in ``imagen.yaml`` (or ``--opt``) to use it.
    :param kind: what it is: ``checkpoint``, ``lora``, ``unet``, ``vae`` (ComfyUI),
        ``version`` (Replicate), ``model``.
    :param description: a short detail (a date, an owner, "retired").
    :param current: the one the instance is configured with.
    """

    name: str
    kind: str = "model"
    description: str = ""
    current: bool = False

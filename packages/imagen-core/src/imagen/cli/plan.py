"""What a ``generate`` will do before it does it: ``--dry-run``, and the question before paying.

A plan is the request as the backend would receive it (style applied, seed chosen), the
backend instance, and the price its adapter estimates (:meth:`~imagen.Backend.estimate_cost`).
Building one calls no upstream: the backend is constructed and checks the request, that is
all. A run is *paid* unless its estimate is zero: an unknown price counts as paid.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from imagen.cli import fail

if TYPE_CHECKING:
    from imagen.backend import Backend
    from imagen.config import Config
    from imagen.request import Request

__all__ = ["Plan", "confirm", "plan", "show"]


@dataclass(frozen=True)
class Plan:
    """One run as it would go: the backend, the request before and after its style, the price."""

    backend: Backend
    original: Request
    final: Request
    estimate_usd: float | None
    seed_chosen: bool

    @property
    def paid(self) -> bool:
        return self.estimate_usd is None or self.estimate_usd > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend.name,
            "backend_type": self.backend.config.type,
            "request": self.final.to_dict(),
            "prompt_as_given": self.original.prompt,
            "negative_prompt_as_given": self.original.negative_prompt,
            "seed_chosen": self.seed_chosen,
            "estimate_usd": self.estimate_usd,
            "paid": self.paid,
        }


def plan(config: Config, backend: Backend, request: Request) -> Plan:
    """The plan of ``request`` on ``backend``: style applied, seed chosen, checked, priced.

    :raises RequestError: what the pipeline would refuse (an unknown option, a size out of
        bounds), refused here the same way.
    """
    from imagen.pipeline import check_request, choose_seed
    from imagen.styles import apply_style

    chosen = request.seed is None
    original = request.replace(seed=choose_seed()) if chosen else request
    style = config.style(original.style) if original.style else None
    final = apply_style(original, style)
    check_request(backend, final)
    return Plan(backend, original, final, backend.estimate_cost(final), chosen)


def _price(plans: list[Plan]) -> str:
    known = [p.estimate_usd for p in plans if p.estimate_usd is not None]
    if len(known) < len(plans):
        return "unknown (the backend cannot tell before the run)" + (
            f"; at least ${sum(known):.4f}" if any(known) else ""
        )
    total = sum(known)
    return "free" if total == 0 else f"${total:.4f}"


def show(plans: list[Plan], as_json: bool) -> None:
    """Print what each plan would do (``--dry-run``): nothing was generated."""
    if as_json:
        body: Any = [p.to_json() for p in plans]
        click.echo(json.dumps(body[0] if len(body) == 1 else body, indent=2, ensure_ascii=False))
        return
    for number, item in enumerate(plans):
        final = item.final
        if number:
            click.echo()
        size = f"{final.width or '?'}x{final.height or '?'}" if final.width or final.height else ""
        rows = [
            ("backend", f"{item.backend.name} ({item.backend.config.type})"),
            ("prompt", final.prompt),
            ("negative", final.negative_prompt),
            ("style", final.style or ""),
            ("size", size or "the backend's default"),
            ("steps", final.steps or "the backend's default"),
            (
                "seed",
                f"{final.seed}" + (" (chosen now: --seed to keep it)" if item.seed_chosen else ""),
            ),
            ("count", final.count),
            ("options", ", ".join(f"{k}={v}" for k, v in final.options.items())),
            ("inputs", ", ".join(f"{i.role} {i.name}" for i in final.inputs)),
            ("estimate", _price([item])),
        ]
        for name, value in rows:
            if value != "":
                click.echo(f"{name + ':':<10}{value}")
    if len(plans) > 1:
        images = sum(p.final.count for p in plans)
        click.echo(f"\n{len(plans)} runs, {images} images, estimate: {_price(plans)}")
    click.echo("nothing was generated (--dry-run)", err=True)


def confirm(config: Config, plans: list[Plan], yes: bool) -> None:
    """Ask before a paid run of more images than ``usage.confirm_over``; refuse where no one can answer.

    :raises click.exceptions.Exit: 130 when the user says no; 2 when stdin is not a terminal
        and ``--yes`` was not given.
    """
    from imagen.usage.settings import USAGE

    limit = config.section_values("usage", USAGE)["confirm_over"]
    paid = [p for p in plans if p.paid]
    images = sum(p.final.count for p in paid)
    if yes or limit < 0 or images <= limit:
        return
    backends = sorted({p.backend.name for p in paid})
    what = (
        f"{images} images on {', '.join(f'backend {name!r}' for name in backends)}"
        f" (estimate: {_price(paid)})"
    )
    if not sys.stdin.isatty():
        fail(
            f"this run makes {what}, more than usage.confirm_over ({limit}) allows without "
            "asking, and standard input is not a terminal to ask on",
            2,
            hint="rerun with --yes to go ahead",
        )
    if not click.confirm(f"imagen: make {what}?", default=False, err=True):
        fail("cancelled; nothing was generated", 130)

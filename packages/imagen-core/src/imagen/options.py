"""Backend options (``--opt KEY=VALUE``): refused before any call unless the backend knows them.

A backend lists the options it knows through :meth:`~imagen.Backend.options`; imagen checks
every request against that list before the backend sees it, in ``imagen generate``, the
worker's door and every other entry to the pipeline, so a misspelt option
(``--opt qualty=high``) never runs, and never bills, a request made without it.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from imagen.errors import RequestError

if TYPE_CHECKING:
    from imagen.backend import Backend
    from imagen.request import Request

__all__ = ["check_options", "closest"]


def closest(name: str, known: list[str]) -> str | None:
    """The known name ``name`` most likely meant, if one is close enough."""
    found = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not found:
        lowered = {item.lower(): item for item in known}
        found = [lowered[name.lower()]] if name.lower() in lowered else []
    return found[0] if found else None


def check_options(backend: Backend, request: Request) -> None:
    """Refuse the options of ``request`` that ``backend`` does not know.

    :raises RequestError: naming the backend, the first unknown option, the closest known
        one and every known one.
    """
    known = backend.options()
    if known is None:
        return  # the backend takes options free-form
    names = sorted(known)
    for name in request.options:
        if name in known:
            continue
        where = f'backend "{backend.name}"'
        if not names:
            raise RequestError(f"{where} takes no options, not --opt {name}")
        guess = closest(name, names)
        hint = f'did you mean "{guess}"? ' if guess else ""
        raise RequestError(f'{where} has no option "{name}" ({hint}known: {", ".join(names)})')

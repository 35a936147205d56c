"""The gallery page: one HTML file, one script and one stylesheet, served from the package.

No build step and no CDN: the page is plain HTML, CSS and a JavaScript module, and it talks
to the same API as any other client, signed in through an HttpOnly session cookie.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from imagen_worker import __version__

__all__ = ["router", "static_files"]

# The page loads nothing from anywhere else and may not be framed.
_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_STATIC = resources.files("imagen_worker.serve") / "static"

router = APIRouter()


@cache
def _page() -> str:
    # The version in the assets' URLs lets browsers cache them until imagen is upgraded.
    return (_STATIC / "index.html").read_text(encoding="utf-8").replace("{{version}}", __version__)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def gallery() -> HTMLResponse:
    return HTMLResponse(
        _page(),
        headers={
            "Content-Security-Policy": _POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


def static_files() -> StaticFiles:
    """The page's script, stylesheet and icon."""
    return StaticFiles(directory=str(_STATIC))

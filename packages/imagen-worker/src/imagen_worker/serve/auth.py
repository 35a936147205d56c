"""Who is calling: a bearer token (API key or Supabase-style JWT), or the gallery's cookie.

- No token, a wrong key, a bad signature, an expired token: 401.
- A valid token that acts for no user (Supabase's anon or service keys carry no ``sub``),
  or a cookie sent with a write from another site: 403.
- Another owner's job or image is not an auth error at all: row-level security hides it,
  and the route answers 404 as for a missing one.
"""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from imagen.tokens import AuthError, Credentials, Identity
from imagen_worker.serve.bodies import Session, SignIn
from imagen_worker.serve.errors import ApiError, documented
from imagen_worker.serve.services import ServicesDep
from imagen_worker.serve.settings import ServeSettings

__all__ = ["SESSION_COOKIE", "Owner", "authenticate", "router"]

SESSION_COOKIE = "imagen_session"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from serve.api_keys, or a Supabase-style JWT (HS256, `sub`).",
)
_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="The gallery page's session, set by POST /v1/session.",
)


def authenticate(token: str, settings: ServeSettings) -> Identity:
    """The identity ``token`` proves; ApiError 401 or 403 when it proves none."""
    try:
        return Credentials(settings.api_keys, settings.jwt_secret).authenticate(token)
    except AuthError as exc:
        raise ApiError(exc.status, exc.message, code=exc.code) from None


async def _caller(
    request: Request,
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> str:
    """The owner the request acts for: its bearer token's, else its session cookie's."""
    if request.headers.get("authorization") is not None:
        if bearer is None or not bearer.credentials.strip():
            raise ApiError(401, "You didn't provide an API key.", code="missing_api_key")
        return authenticate(bearer.credentials.strip(), services.settings).owner
    if not cookie:
        raise ApiError(401, "You didn't provide an API key.", code="missing_api_key")
    if request.method not in _SAFE_METHODS and not _same_site(request):
        raise ApiError(403, "A cross-site request may not use the session.", code="forbidden")
    return authenticate(cookie, services.settings).owner


Owner = Annotated[str, Depends(_caller)]


def _same_site(request: Request) -> bool:
    """Whether a browser says the request comes from a page of this server."""
    origin = request.headers.get("origin")
    if origin is not None:
        here = urlsplit(str(request.base_url))
        there = urlsplit(origin)
        return (there.scheme, there.netloc) == (here.scheme, here.netloc)
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


router = APIRouter(tags=["session"])


@router.post(
    "/v1/session",
    summary="Sign in: keep a token in an HttpOnly cookie (the gallery page uses it)",
    response_model=Session,
    responses=documented(),
)
def sign_in(body: SignIn, request: Request, response: Response, services: ServicesDep) -> Session:
    identity = authenticate(body.token.strip(), services.settings)
    max_age = services.settings.session_days * 86400
    if identity.expires_at is not None:
        max_age = min(max_age, int(identity.expires_at - time.time()))
    response.set_cookie(
        SESSION_COOKIE,
        body.token.strip(),
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return Session(owner=identity.owner)


@router.get(
    "/v1/session",
    summary="Who the request acts for",
    response_model=Session,
    responses=documented(),
)
def session(owner: Owner) -> Session:
    return Session(owner=owner)


@router.delete("/v1/session", summary="Sign out: forget the session cookie", status_code=204)
def sign_out(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")

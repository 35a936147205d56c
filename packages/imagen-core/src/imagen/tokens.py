"""Who calls imagen's servers: API keys kept as hashes, and Supabase-style JWTs.

``imagen serve`` and ``imagen mcp`` share one way in, read from the ``serve:`` section:
``api_keys`` maps the SHA-256 hex digest of each key to the owner it acts for (the key
itself is never stored), and ``jwt_secret_env`` names the environment variable holding the
HS256 secret that signs Supabase-style JWTs, whose ``sub`` is the owner.

Checking a JWT needs PyJWT, which imagen-worker and imagen-mcp install; it is imported only
when a JWT arrives.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagen import secrets as imagen_secrets
from imagen.errors import ImagenError

if TYPE_CHECKING:
    from imagen.config import Config

__all__ = ["AuthError", "Credentials", "Identity", "hash_key", "new_key", "read_credentials"]


class AuthError(ImagenError):
    """A token that proves no identity.

    :param status: 401 when the caller is nobody (no token, a wrong key, a bad signature,
        an expired token), 403 when a valid token acts for no user.
    :param code: a short machine-readable reason (``invalid_api_key``, ``token_expired``,
        ``invalid_token``, ``forbidden``).
    """

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Identity:
    """Who a token acts for, and until when (None: until the key is removed from config)."""

    owner: str
    expires_at: float | None = None


@dataclass(frozen=True)
class Credentials:
    """The keys and the JWT secret a server accepts.

    :param api_keys: SHA-256 hex digest of each API key → the owner it acts for.
    :param jwt_secret: the HS256 secret of Supabase-style JWTs, or None for API keys only.
    """

    api_keys: Mapping[str, str] = field(default_factory=dict)
    jwt_secret: str | None = field(default=None, repr=False)

    @property
    def anyone_can_sign_in(self) -> bool:
        """False when there is neither a key nor a JWT secret: every caller is refused."""
        return bool(self.api_keys) or self.jwt_secret is not None

    def authenticate(self, token: str) -> Identity:
        """The identity ``token`` proves.

        :raises AuthError: when it proves none (see the class for the statuses).
        """
        owner = self.api_keys.get(hash_key(token))
        if owner is not None:
            return Identity(owner)
        if self.jwt_secret is not None and token.count(".") == 2:
            return _jwt_identity(token, self.jwt_secret)
        raise AuthError("Incorrect API key provided.", status=401, code="invalid_api_key")


def _jwt_identity(token: str, secret: str) -> Identity:
    import jwt

    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["exp"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("The token has expired.", status=401, code="token_expired") from None
    except jwt.PyJWTError:
        raise AuthError("The token is not valid.", status=401, code="invalid_token") from None
    owner = claims.get("sub")
    if not isinstance(owner, str) or not owner:
        raise AuthError(
            "The token is valid but acts for no user (it has no sub).", status=403, code="forbidden"
        )
    return Identity(owner, float(claims["exp"]))


def hash_key(key: str) -> str:
    """What ``serve.api_keys`` stores for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh API key: ``imk_`` and 32 random bytes, URL-safe."""
    return "imk_" + secrets.token_urlsafe(32)


def read_credentials(config: Config, environ: Mapping[str, str] = os.environ) -> Credentials:
    """``serve.api_keys`` and the secret ``serve.jwt_secret_env`` names, checked.

    :raises ConfigError: naming the file, line and key that is wrong, or the unset variable.
    """
    section = config.sections.get("serve")
    data = section.data if section is not None else {}
    jwt_secret = None
    variable = data.get("jwt_secret_env")
    if variable is not None:
        if not isinstance(variable, str) or not variable:
            message = "must name the environment variable holding the JWT secret"
            raise config.section_error("serve", message, "jwt_secret_env")
        jwt_secret = environ.get(variable)
        if not jwt_secret:
            message = f"environment variable {variable} is not set"
            raise config.section_error("serve", message, "jwt_secret_env")
        imagen_secrets.register(jwt_secret)
    keys = data.get("api_keys") or {}
    if not isinstance(keys, dict):
        raise config.section_error("serve", "must be a mapping of SHA256-HEX: OWNER", "api_keys")
    for digest, owner in keys.items():
        where = f"api_keys.{digest}"
        if not (isinstance(digest, str) and len(digest) == 64 and _is_hex(digest)):
            message = "each key must be the SHA-256 hex digest of an API key (imagen serve-key)"
            raise config.section_error("serve", message, where)
        if not isinstance(owner, str) or not owner:
            raise config.section_error("serve", "must name the owner the key acts for", where)
    return Credentials({digest.lower(): owner for digest, owner in keys.items()}, jwt_secret)


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True

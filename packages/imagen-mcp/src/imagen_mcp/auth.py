"""HTTP callers sign in as they do for ``imagen serve``: an API key or a Supabase-style JWT."""

from __future__ import annotations

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken

from imagen.tokens import AuthError, Credentials

__all__ = ["ImagenTokenVerifier", "caller"]


class ImagenTokenVerifier:
    """The SDK's ``TokenVerifier``: the bearer token's owner becomes the caller.

    A token the credentials refuse answers 401 at the door (the SDK's middleware), before
    any MCP message is read; the SDK also keeps each legacy session to the caller that
    opened it.
    """

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            identity = self.credentials.authenticate(token.strip())
        except AuthError:
            return None
        expires = int(identity.expires_at) if identity.expires_at is not None else None
        return AccessToken(
            token=token,
            client_id=identity.owner,
            subject=identity.owner,
            scopes=[],
            expires_at=expires,
        )


def caller(default: str) -> str:
    """The owner the current request acts for: its token's over HTTP, else ``default``."""
    token = get_access_token()
    return token.client_id if token is not None else default

"""Errors in OpenAI's shape, for every way a request can go wrong, and the body-size limit."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ApiError", "BodyLimit", "ErrorBody", "documented", "install_error_handlers"]


class ApiError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        *,
        param: str | None = None,
        code: str | None = None,
        retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status, message, kind, param, code
        )  # fmt: skip
        self.retry = retry

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        if self.retry is not None:  # the official SDKs retry 5xx unless told not to
            headers["x-should-retry"] = "true" if self.retry else "false"
        return JSONResponse({"error": body}, status_code=self.status, headers=headers or None)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error body."""

    error: ErrorDetail


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents: its own, and 400, 401, 403 and 413, which any may."""
    return {status: {"model": ErrorBody} for status in sorted({400, 401, 403, 413, *statuses})}


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error, FastAPI's own included, in OpenAI's shape (never FastAPI's 422)."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            return ApiError(400, "We could not parse the JSON body of your request.").response()
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        return ApiError(400, f"{where}: {first.get('msg')}", param=where).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return ApiError(exc.status_code, str(exc.detail), kind).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server's log (uvicorn logs it); the caller learns nothing
        # of the server's insides, as OpenAI's own 500s say.
        return ApiError(
            500, "The server had an error while processing your request.", "server_error"
        ).response()


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413: by their Content-Length, or as they stream.

    A chunked body has no length to check up front, so its bytes are counted as the app
    reads them; going over raises an HTTPException that FastAPI passes on untouched.
    """

    def __init__(self, app: ASGIApp, limit: int, routes: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.routes = routes or {}  # path -> its own limit (uploads take more)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.routes.get(scope.get("path", ""), self.limit)
        message = f"the request body is over {limit} bytes"
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > limit:
            await ApiError(413, message).response()(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            received = await receive()
            if received["type"] == "http.request":
                seen += len(received.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, message)
            return received

        await self.app(scope, counted, send)

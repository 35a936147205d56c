"""Errors in OpenAI's shape, for every way a request can go wrong."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

__all__ = ["ApiError", "ErrorBody", "documented", "install_error_handlers"]


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
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status, message, kind, param, code
        )  # fmt: skip

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse({"error": body}, status_code=self.status, headers=headers)


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
        message = str(exc.detail)
        if exc.status_code == 413:  # FastAPI's max_body_size, however the body came
            message = f"the request body is over {app.max_body_size} bytes"
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return ApiError(exc.status_code, message, kind).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server's log (uvicorn logs it); the caller learns nothing
        # of the server's insides, as OpenAI's own 500s say.
        return ApiError(
            500, "The server had an error while processing your request.", "server_error"
        ).response()

"""The one place where qcline's exception tree becomes HTTP: every error is a JSON body
``{"detail": "...", "error": "<ExceptionName>"}`` with the status its kind deserves; nothing but a bug is a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.services.auth import AuthError, ForbiddenError
from api.services.batching import NotReadyError, OverloadedError
from api.services.jobs import TrainingUnavailableError
from api.services.redact import redact_paths
from inspection.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    DatasetError,
    InvalidFrameError,
    ModelPackageError,
    NotFoundError,
    PayloadTooLargeError,
    ProfileError,
    QCError,
    StoreError,
    UnsupportedMediaError,
)
from inspection.ids import IdentifierError
from inspection.imageio import DecoderBusyError
from inspection.reviews import ReviewError
from models.registry import PromotionRefusedError

log = logging.getLogger(__name__)


STATUS: tuple[tuple[type[Exception], int], ...] = (
    (AuthError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (PromotionRefusedError, 409),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (UnsupportedMediaError, 415),
    (InvalidFrameError, 422),
    (ProfileError, 422),
    (ReviewError, 422),
    (DatasetError, 422),
    (ModelPackageError, 422),
    (ConfigError, 422),
    (IdentifierError, 422),
    (BadRequestError, 422),
    (OverloadedError, 503),
    (DecoderBusyError, 503),
    (NotReadyError, 503),
    (TrainingUnavailableError, 503),
    (StoreError, 503),
    (QCError, 400),
)


def status_of(exc: Exception) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(message: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"detail": message, "error": kind, **extra}


async def _qc_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        headers["Retry-After"] = "1"
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(error_body(redact_paths(str(exc)), type(exc).__name__), status_code=status, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [redact_paths(f"{_location(e.get('loc', ()))}: {e.get('msg', 'invalid')}") for e in exc.errors()]
    return JSONResponse(error_body("; ".join(problems) or "invalid request", "RequestValidationError",
                                   problems=problems), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(error_body(redact_paths(str(exc.detail)), "HTTPException"), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body("internal error (logged on the server)", "InternalError"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(QCError, _qc_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

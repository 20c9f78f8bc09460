"""Typed errors of the facade and how every failure becomes an HTTP answer with an ErrorBody.

Bad input is always a 4xx with a machine-readable code; a dependency that is down is a 503;
nothing a client sends may produce a 5xx.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.api import ErrorBody
from schemas.base import summarise_errors

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer the facade gives on purpose: status, code (for machines) and message (for people)."""

    def __init__(self, status: int, code: str, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


class ModelNotLoadedError(ApiError):
    def __init__(self) -> None:
        super().__init__(503, "model_not_loaded", "no model is loaded yet: train and import a checkpoint")


class DependencyDownError(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(503, code, message)


# Image decode codes that mean "too big" rather than "broken".
_TOO_LARGE_CODES = frozenset({"image_too_large"})


def as_api_error(exc: BaseException) -> ApiError | None:
    """The answer for an error of another package, or None when it is not one we know.

    Storage and model-core errors are imported here, not at module level, so the facade's
    own modules stay importable on their own (and in tests with fakes at the boundary).
    """
    if isinstance(exc, ApiError):
        return exc
    from model_core.errors import ImageDecodeError, ModelCoreError
    from runtime.decode_budget import DecodeBudgetFull
    from storage.errors import ObjectForbidden, ObjectMissing, ObjectTooLarge, StorageError, UrlNotAllowed

    if isinstance(exc, UrlNotAllowed):
        return ApiError(400, exc.code, str(exc))
    if isinstance(exc, ObjectMissing):
        return ApiError(404, "object_missing", str(exc))
    if isinstance(exc, ObjectForbidden):
        return ApiError(403, exc.code, str(exc))
    if isinstance(exc, ObjectTooLarge):
        return ApiError(413, "object_too_large", str(exc))
    if isinstance(exc, StorageError):
        if exc.retriable:
            return DependencyDownError("object_store_unavailable", f"the object store is unavailable: {exc}")
        return ApiError(400, exc.code, str(exc))
    if isinstance(exc, ImageDecodeError):
        code = str(exc.code)
        return ApiError(413 if code in _TOO_LARGE_CODES else 422, code, str(exc))
    if isinstance(exc, ModelCoreError):
        if exc.retriable:
            return DependencyDownError(str(exc.code), f"{exc} (retry later)")
        return ApiError(422, str(exc.code), str(exc))
    if isinstance(exc, DecodeBudgetFull):
        return ApiError(503, "busy_decoding", "too many images are being decoded: retry shortly", retry_after_s=1)
    if isinstance(exc, ConnectionError | TimeoutError):
        return DependencyDownError("dependency_unavailable", f"a dependency did not answer: {type(exc).__name__}")
    return None


def error_response(error: ApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(code=error.code, message=error.message)
    if error.retry_after_s is not None:
        headers = {**(headers or {}), "Retry-After": str(error.retry_after_s)}
    return JSONResponse(body.model_dump(), status_code=error.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        error = as_api_error(exc)
        if error is None:  # a known package root whose subclass we do not map: still not the client's 5xx
            log.exception("unmapped error on %s", request.url.path)
            error = ApiError(500, "internal_error", "unexpected error; see the facade's log")
        return error_response(error)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        errors: Sequence[Any] = exc.errors() if isinstance(exc, RequestValidationError | ValidationError) else ()
        return error_response(ApiError(422, "invalid_request", summarise_errors(errors, whole="body")))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, code, str(exc.detail)), headers=exc.headers)

    from aiokafka.errors import KafkaError

    from model_core.errors import ModelCoreError
    from storage.errors import StorageError

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    from runtime.decode_budget import DecodeBudgetFull

    for root in (ApiError, StorageError, ModelCoreError, ConnectionError, TimeoutError, DecodeBudgetFull):
        app.add_exception_handler(root, on_api_error)

    async def on_kafka(request: Request, exc: Exception) -> JSONResponse:
        return error_response(DependencyDownError("kafka_unavailable", f"the Kafka broker is unavailable: {exc}"))

    app.add_exception_handler(KafkaError, on_kafka)

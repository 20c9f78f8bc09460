"""OpenAPI descriptions of the error answers the endpoint families share."""

from __future__ import annotations

from typing import Any

from schemas.api import ErrorBody

_DESCRIPTIONS = {
    400: "The request is not allowed (e.g. an image_url outside the policy); `code` says why",
    401: "Missing or wrong X-API-Key",
    404: "The object, job or version does not exist",
    409: "The request conflicts with the registry's state (e.g. the version already serves)",
    413: "The object or the decoded image is larger than the limits",
    422: "The body or the image is invalid (not an image, truncated, empty, ...)",
    503: "A dependency (Kafka, the object store, the model) is not available; retry later",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses}

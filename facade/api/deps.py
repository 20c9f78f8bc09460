"""FastAPI dependencies, as named Annotated aliases."""

from __future__ import annotations

import hmac
from typing import Annotated, cast

from fastapi import Depends, Header, Request

from facade.api.errors import ApiError, ModelNotLoadedError
from facade.api.services import Services
from model_core.detector import Detector
from schemas.settings import Settings


def get_services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def current_detector(services: ServicesDep) -> Detector:
    """The model serving now, taken once per request so a hot swap never changes it mid-request."""
    detector = services.served.current
    if detector is None:
        raise ModelNotLoadedError()
    return detector


DetectorDep = Annotated[Detector, Depends(current_detector)]


ApiKeyHeader = Annotated[
    str | None,
    Header(alias="X-API-Key", description="Required on mutating endpoints and for stored heat maps"),
]


def check_write_access(settings: Settings, given: str | None) -> None:
    """Raise 401 unless `given` is the API key (or, without a key, anonymous writes are switched on)."""
    expected = settings.api_key
    if expected is None:
        if settings.allow_anonymous_writes:
            return
        raise ApiError(
            401,
            "unauthorized",
            "this facade has no API key: writes are off (set BATTERY_CT_API_KEY, or "
            "BATTERY_CT_ALLOW_ANONYMOUS_WRITES=true on a demo workstation)",
        )
    # Constant-time comparison: the answer's timing must not reveal how much of the key matched.
    if not hmac.compare_digest((given or "").encode(), expected.get_secret_value().encode()):
        raise ApiError(401, "unauthorized", "missing or wrong X-API-Key header")


def require_api_key(settings: SettingsDep, x_api_key: ApiKeyHeader = None) -> None:
    check_write_access(settings, x_api_key)


ApiKeyDep = Annotated[None, Depends(require_api_key)]

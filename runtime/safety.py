"""Settings that must never reach a running service: they fail safe by refusing to start.

An empty API key would switch authentication off; the `change-me` placeholders of `.env.example`
are public. Each is refused with a line naming the variable, at the start of every service.
"""

from __future__ import annotations

from pydantic import SecretStr

from schemas.settings import ENV_PREFIX, Settings

PLACEHOLDER = "change-me"


class UnsafeSettings(Exception):  # noqa: N818 (a state of the configuration, said to the operator)
    """One or more settings would run the service unprotected; the message names each."""


def unsafe_settings(settings: Settings) -> list[str]:
    """What is wrong with `settings` for a service, one line each (empty: safe to start)."""
    problems = []
    if settings.api_key is not None and not settings.api_key.get_secret_value().strip():
        problems.append(f"{ENV_PREFIX}API_KEY is set but empty: set a key, or unset it to refuse anonymous writes")
    secrets: dict[str, SecretStr | None] = {
        "API_KEY": settings.api_key,
        "S3_SECRET_KEY": settings.s3_secret_key,
        "KAFKA_PASSWORD": settings.kafka_password,
    }
    for name, secret in secrets.items():
        if secret is not None and secret.get_secret_value().strip().lower().startswith(PLACEHOLDER):
            problems.append(f"{ENV_PREFIX}{name} is still the {PLACEHOLDER!r} placeholder of .env.example: replace it")
    return problems


def check_safe_to_start(settings: Settings) -> None:
    """Raise `UnsafeSettings` naming every problem of `settings`."""
    problems = unsafe_settings(settings)
    if problems:
        raise UnsafeSettings("; ".join(problems))

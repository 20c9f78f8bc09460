"""Settings that must never reach a running service: they fail safe by refusing to start.

An empty API key would switch authentication off; the `change-me` placeholders of `.env.example`
are public. Each is refused with a line naming the variable, at the start of every service.
"""

from __future__ import annotations

from typing import Any

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
    if settings.signing_key is not None and not settings.signing_key.get_secret_value().strip():
        problems.append(f"{ENV_PREFIX}SIGNING_KEY is set but empty: set the key or unset it")
    if settings.verify_key is not None and not settings.verify_key.strip():
        problems.append(f"{ENV_PREFIX}VERIFY_KEY is set but empty: an empty key would switch verification off")
    secrets: dict[str, SecretStr | None] = {
        "API_KEY": settings.api_key,
        "S3_SECRET_KEY": settings.s3_secret_key,
        "KAFKA_PASSWORD": settings.kafka_password,
        "SIGNING_KEY": settings.signing_key,
    }
    for name, secret in secrets.items():
        if secret is not None and secret.get_secret_value().strip().lower().startswith(PLACEHOLDER):
            problems.append(f"{ENV_PREFIX}{name} is still the {PLACEHOLDER!r} placeholder of .env.example: replace it")
    return problems


def check_safe_to_start(settings: Settings) -> None:
    """Raise `UnsafeSettings` naming every problem of `settings` (keys that do not parse included)."""
    problems = unsafe_settings(settings)
    if not problems:
        try:
            registry_keys(settings, sign=settings.signing_key is not None)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise UnsafeSettings("; ".join(problems))


def registry_keys(settings: Settings, *, sign: bool = False) -> dict[str, Any]:
    """The keyword arguments of `model_core.registry.Registry` for this process: the verification
    key(s) always when configured; the signing key only where `sign` (the retrain consumer and an
    operator's import). Raises ValueError naming the variable when a key does not parse."""
    from model_core.signing import load_signing_key, load_verify_keys

    keys: dict[str, Any] = {}
    try:
        if settings.verify_key:
            keys["verify_key"] = load_verify_keys(settings.verify_key)
    except Exception as exc:
        raise ValueError(f"{ENV_PREFIX}VERIFY_KEY does not hold Ed25519 public keys: {exc}") from exc
    try:
        if sign and settings.signing_key is not None:
            keys["signer"] = load_signing_key(settings.signing_key.get_secret_value())
    except Exception as exc:
        raise ValueError(f"{ENV_PREFIX}SIGNING_KEY is not an Ed25519 private key: {exc}") from exc
    return keys

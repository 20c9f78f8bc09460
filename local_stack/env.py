"""`export BATTERY_CT_...` lines: every setting another process needs to use the local infrastructure."""

from __future__ import annotations

import shlex

from local_stack.state import InfraState
from schemas.settings import ENV_PREFIX, Settings


def infra_env(state: InfraState, settings: Settings) -> dict[str, str]:
    """Environment variables (name -> value) that point a battery-ct process at this infrastructure."""
    return {
        f"{ENV_PREFIX}KAFKA_BOOTSTRAP": state.kafka.endpoint,
        f"{ENV_PREFIX}S3_ENDPOINT": state.s3.endpoint,
        f"{ENV_PREFIX}S3_ACCESS_KEY": settings.s3_access_key,
        f"{ENV_PREFIX}S3_SECRET_KEY": settings.s3_secret_key.get_secret_value(),
        f"{ENV_PREFIX}S3_SECURE": "true" if settings.s3_secure and not state.s3.managed else "false",
        f"{ENV_PREFIX}S3_REGION": settings.s3_region,
        f"{ENV_PREFIX}STATE_DIR": str(settings.state_dir),
    }


def export_lines(env: dict[str, str]) -> list[str]:
    """Shell lines for `eval "$(battery-ct infra up --env)"`."""
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]

"""Gateway settings: the shared ones plus rate limits (per token, and before authentication per
address), long-poll limits and signature windows."""

from __future__ import annotations

from pydantic import Field

from libs.runtime.ratelimit import PreAuthSettings
from libs.runtime.settings import OwnSchemaSettings, VaultSettings


class Settings(OwnSchemaSettings, VaultSettings, PreAuthSettings):
    service_name: str = "webhook-gateway"
    http_port: int = 8080
    public_url: str | None = Field(
        default=None, description="external base URL; makes status_url absolute (e.g. https://gw.example.com)"
    )
    rate_limit_per_second: float = Field(default=20.0, gt=0, description="per CI token, sustained")
    rate_limit_burst: int = Field(default=40, ge=1, description="per CI token, bucket size")
    long_poll_max_seconds: int = Field(default=60, ge=0, le=600)
    long_polls_per_token: int = Field(
        default=8, ge=1, le=1000, description="concurrent ?wait= long-polls per CI token (per replica)"
    )
    idempotency_ttl_hours: float = Field(default=24.0, gt=0, description="how long an Idempotency-Key holds")
    signature_tolerance_seconds: int = Field(default=300, ge=1, description="accepted webhook-timestamp skew")
    replay_window_seconds: int = Field(default=600, ge=1, description="how long a webhook-id is remembered")
    last_used_interval_seconds: float = Field(
        default=60.0, ge=0, description="last_used_at is written at most this often per token"
    )
    cache_max_age_seconds: float = Field(
        default=300.0,
        gt=0,
        description="backstop only: component and signing caches are dropped on ComponentChanged",
    )

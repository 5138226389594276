"""Console settings: where the public API answers, and how long a sign-in lasts.

The console keeps no database and no admin token: everything it shows or changes goes through
`LANDFALL_URL` with the signed-in person's own org API key, so it can never do more than they can.
"""

from __future__ import annotations

from pydantic import Field

from libs.runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "console"
    http_port: int = 8089
    url: str = Field(
        default="http://127.0.0.1:8088",
        description="LANDFALL_URL: the one address of the public API (the front door or an Ingress)",
    )
    credentials_url: str | None = Field(
        default=None, description="where there is no front door: the credentials service (registries)"
    )
    gateway_url: str | None = Field(
        default=None, description="... the webhook gateway (CI tokens, signing secrets, snippets)"
    )
    orchestrator_url: str | None = Field(default=None, description="... the orchestrator (the rest)")
    default_org: str = Field(default="default", description="the org the sign-in form proposes")
    session_ttl_seconds: float = Field(default=8 * 3600, gt=0, description="a sign-in ends after this")
    session_idle_seconds: float = Field(
        default=3600, gt=0, description="and earlier when nobody used it for this long"
    )
    secure_cookies: bool = Field(
        default=False,
        description="always mark the cookies Secure (behind a TLS proxy that does not send"
        " X-Forwarded-Proto); they are marked Secure anyway when the request came over HTTPS",
    )
    api_timeout_seconds: float = Field(default=15.0, gt=0)

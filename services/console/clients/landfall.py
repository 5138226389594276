"""Landfall's public HTTP API, called with the signed-in person's own key.

Every answer of 400 and above comes back as `ApiProblem` with the RFC 9457 document's `status`,
`detail` and `errors`, so pages show the API's own words next to the fields they name; a
connection that fails, or a body that is no problem document, is a 503 problem of our own
("Landfall is unavailable"), never an exception that would become a 500.

Where: `LANDFALL_URL`, the one address (a front door or an Ingress routes by path); or, where there
is none (docker-compose), the per-service addresses, routed here by the same rules as the local front
door (`libs/devstack/front_door.py`): registries to credentials; CI tokens, signing secrets,
snippets and webhooks to the gateway; the rest to the orchestrator.

The browser's address (as this console determines it: `AddressLimiter.address` with its own
`LANDFALL_TRUSTED_PROXY_HOPS`/`LANDFALL_TRUSTED_PROXIES`, so behind an ingress it reads the
ingress' header) goes out as a one-entry `X-Forwarded-For`: the single address the console
believes, never the raw chain a browser could have written. A service that lists the console in
`LANDFALL_TRUSTED_PROXIES` then limits refused keys per browser, not per console.

One `aiohttp.ClientSession` (one connection pool) for the whole process: a page that makes four
calls reuses warm connections to the front door instead of opening four.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import aiohttp
from pydantic import SecretStr

from libs.runtime.logs import request_id_var

client_address_var: ContextVar[str | None] = ContextVar("console_client_address", default=None)

_COMPONENT = r"/v1/orgs/[^/]+/projects/[^/]+/components/[^/]+"
ROUTES = (
    (re.compile(r"^/v1/orgs/[^/]+/registries(/|$)"), "credentials"),
    (re.compile(r"^/v1/webhooks(/|$)"), "gateway"),
    (re.compile(rf"^{_COMPONENT}/(tokens|signing-secret|ci-snippets)(/|$)"), "gateway"),
)


def service_of(path: str) -> str:
    return next((service for pattern, service in ROUTES if pattern.match(path)), "orchestrator")


class ApiProblem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.retry_after = retry_after


def unavailable(detail: str) -> ApiProblem:
    return ApiProblem(503, "Service Unavailable", f"Landfall is unavailable: {detail}")


class Landfall:
    def __init__(
        self, http: aiohttp.ClientSession, *, base_url: str, services: Mapping[str, str | None] | None = None
    ) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self._services = {k: v.rstrip("/") for k, v in (services or {}).items() if v}

    def url(self, path: str) -> str:
        return self._services.get(service_of(path), self.base_url) + path

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: SecretStr,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        """The answer's JSON (None for 204); `ApiProblem` for anything else."""
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"}
        rid = request_id_var.get()
        if rid is not None:
            headers["X-Request-Id"] = rid  # one request id from the browser's click to the service
        client = client_address_var.get()
        if client is not None:
            headers["X-Forwarded-For"] = client  # the browser, for the services' pre-auth limit
        try:
            async with self._http.request(
                method,
                self.url(path),
                json=body,
                params={k: v for k, v in (query or {}).items() if v},
                headers=headers,
            ) as response:
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise unavailable(type(exc).__name__) from None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if status < 400:
            return data
        if not isinstance(data, dict):
            raise unavailable(f"answered {status} without a problem document")
        errors = data.get("errors")
        raise ApiProblem(
            status,
            str(data.get("title", "Error")),
            str(data.get("detail", "")),
            errors if isinstance(errors, list) else [],
            retry_after,
        )

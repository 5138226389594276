"""The front door: one local address under which every endpoint of every service answers.

API.md promises `LANDFALL_URL`, a single base URL for people and the `landfall` CLI; each
service still owns its own paths. This is a small reverse proxy, run by the `Stack` as its own
process like the services, that routes by path (see `ROUTES`; the first match wins):

| path | service |
| --- | --- |
| `/v1/orgs/{org}/registries...` | credentials |
| `/v1/webhooks/...` | webhook-gateway |
| `/v1/orgs/{org}/projects/{p}/components/{c}/tokens...` | webhook-gateway |
| `/v1/orgs/{org}/projects/{p}/components/{c}/signing-secret...` | webhook-gateway |
| `/v1/orgs/{org}/projects/{p}/components/{c}/ci-snippets...` | webhook-gateway |
| every other `/v1/...` | orchestrator |
| `/healthz`, `/readyz` | the front door itself |

In Kubernetes an Ingress does this routing (one rule per prefix above, the orchestrator as
the `/v1` fallback) and this module is not deployed.

Subtle parts:
- Bodies stream both ways, and nothing times out while an answer is being read: CI long-polls
  (`GET /v1/webhooks/deployments/{id}?wait=60`) must not be cut, so the read timeout is well
  above the longest wait a service allows.
- Status codes and end-to-end headers pass unchanged (Authorization, Idempotency-Key, the
  webhook-* signature headers, Retry-After, Location, ...); only hop-by-hop headers are
  dropped, and responses are not decompressed, so Content-Encoding and Content-Length stay true.
- A service may have several replicas (`--orchestrator URL1,URL2`): requests go round-robin,
  one replica after the other, as a Service in Kubernetes spreads them; a replica that refuses
  the connection is skipped for the next one (nothing was sent yet, so retrying is safe).
- A service that cannot be reached at all answers 503 + Retry-After as an RFC 9457 problem naming
  the service, like any unavailable dependency in API.md. A service that dies in the middle of an
  answer can only have its connection closed: the status line is already sent.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections.abc import AsyncIterator, Iterator

import aiohttp
from aiohttp import web

from libs.runtime.errors import ProblemError
from libs.runtime.http import problem_response, unavailable

_COMPONENT = r"/v1/orgs/[^/]+/projects/[^/]+/components/[^/]+"
ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/v1/orgs/[^/]+/registries(/|$)"), "credentials"),
    (re.compile(r"^/v1/webhooks(/|$)"), "webhook_gateway"),
    (re.compile(rf"^{_COMPONENT}/(tokens|signing-secret|ci-snippets)(/|$)"), "webhook_gateway"),
    (re.compile(r"^/v1(/|$)"), "orchestrator"),
)
SERVICE_NAMES = {
    "credentials": "credentials",
    "webhook_gateway": "webhook-gateway",
    "orchestrator": "orchestrator",
}
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
READ_TIMEOUT = 180  # seconds; above the 60 s long-poll maximum plus slack
RETRY_AFTER = 2
CHUNK = 64 * 1024
UPSTREAMS = web.AppKey("upstreams", dict[str, list[str]])
TURNS = web.AppKey("turns", dict[str, Iterator[str]])
SESSION = web.AppKey("session", aiohttp.ClientSession)


def route(path: str) -> str | None:
    """The service owning `path`, or None when no service does (only `/v1/...` is routed)."""
    for pattern, service in ROUTES:
        if pattern.match(path):
            return service
    return None


def _forward_headers(request: web.Request) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Host"] = request.host
    headers["X-Forwarded-Proto"] = request.scheme
    return headers


async def proxy(request: web.Request) -> web.StreamResponse:
    service = route(request.path)
    if service is None:
        detail = f"{request.path} is not a Landfall API path (they start with /v1/)"
        return problem_response(ProblemError(404, "Not Found", detail, kind="not-found"))
    session = request.app[SESSION]
    replicas = len(request.app[UPSTREAMS][service])
    for attempt in range(replicas):
        base = next(request.app[TURNS][service])
        try:
            upstream = await session.request(
                request.method,
                base + request.rel_url.path_qs,
                headers=_forward_headers(request),
                data=request.content if request.body_exists else None,
                allow_redirects=False,
            )
            break
        except aiohttp.ClientConnectorError:
            if attempt + 1 < replicas:
                continue  # refused before anything was sent: the next replica may take it
            return _down(service, base, "ClientConnectorError")
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            return _down(service, base, type(exc).__name__)
    else:  # pragma: no cover - an empty upstream list is refused by create_app
        return _down(service, "", "no replica")
    async with upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for key, value in upstream.headers.items():
            if key.lower() not in HOP_BY_HOP:
                response.headers.add(key, value)
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await response.write(chunk)
        except (TimeoutError, aiohttp.ClientError):
            # The service went away mid-answer: the status is already sent, so cut the connection.
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response


def _down(service: str, base: str, why: str) -> web.Response:
    detail = f"the {SERVICE_NAMES[service]} service is unavailable ({why} at {base})"
    return problem_response(unavailable(detail, RETRY_AFTER))


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ready", "upstreams": request.app[UPSTREAMS]})


def create_app(upstreams: dict[str, str | list[str]]) -> web.Application:
    """`upstreams`: service name (`credentials`, `webhook_gateway`, `orchestrator`) → the base URL
    of each replica (a list, or one string with the URLs separated by commas)."""
    split = {name: urls.split(",") if isinstance(urls, str) else urls for name, urls in upstreams.items()}
    lists = {name: [u.strip().rstrip("/") for u in urls if u.strip()] for name, urls in split.items()}
    missing = {name for name in SERVICE_NAMES if not lists.get(name)}
    if missing:
        raise ValueError(f"no upstream for {sorted(missing)}")
    app = web.Application(client_max_size=0)
    app[UPSTREAMS] = lists
    turns: dict[str, Iterator[str]] = {name: itertools.cycle(urls) for name, urls in lists.items()}
    app[TURNS] = turns

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_read=READ_TIMEOUT)
        async with aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        ) as session:
            app[SESSION] = session
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m libs.devstack.front_door")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    each = "base URL of each replica of the {}, separated by commas"
    parser.add_argument("--credentials", required=True, help=each.format("credentials service"))
    parser.add_argument("--gateway", required=True, help=each.format("webhook-gateway"))
    parser.add_argument("--orchestrator", required=True, help=each.format("orchestrator"))
    args = parser.parse_args(argv)
    upstreams: dict[str, str | list[str]] = {
        "credentials": args.credentials,
        "webhook_gateway": args.gateway,
        "orchestrator": args.orchestrator,
    }
    app = create_app(upstreams)
    web.run_app(app, host=args.host, port=args.port, print=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

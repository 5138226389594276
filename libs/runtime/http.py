"""The aiohttp app factory every service uses.

What it gives a service: `/healthz`, `/readyz` (runs real checks against
NATS, PostgreSQL, Vault), `/metrics` (Prometheus text), `/openapi.json`
(built from the routes the service declares with `Api.route`), RFC 9457
problem documents for every error, the admin-token check, JSON-only bodies
with a size limit, and typed request bodies via pydantic.

Subtle: aiohttp raises 413 itself when a body exceeds `client_max_size`
only when the handler reads it, so the limit is also checked against
Content-Length up front; and router 404/405s are rewritten as problems too,
so clients never have to parse two error formats.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, SecretStr, ValidationError

from libs.runtime.access import (
    AUTHENTICATOR,
    PREAUTH,
    REQUEST_ID_KEY,
    Authenticator,
    Need,
    audit_target,
    bearer_token,
    default_action,
    guard,
)
from libs.runtime.errors import DependencyUnavailable, DomainError, Invalid, ProblemError
from libs.runtime.logs import request_id_var
from libs.runtime.openapi import NAME_PATTERN, PROBLEM_JSON, RouteDoc, openapi_document
from libs.runtime.ratelimit import AddressLimiter, PreAuthSettings

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ReadyCheck = Callable[[], Awaitable[None]]
NAME_RE = re.compile(rf"^{NAME_PATTERN}$")
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
INTEGER_RE = re.compile(r"-?[0-9]{1,18}", re.ASCII)
MAX_JSON_DEPTH = 400


READY_CHECKS = web.AppKey("ready_checks", dict[str, ReadyCheck])
METRICS = web.AppKey("metrics_registry", CollectorRegistry)
ADMIN_TOKEN = web.AppKey("admin_token", SecretStr)


def problem_response(problem: ProblemError) -> web.Response:
    body = problem.body()
    rid = request_id_var.get()
    if rid is not None:
        body.setdefault("request_id", rid)
    return web.Response(
        status=problem.status,
        text=json.dumps(body),
        content_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def unavailable(detail: str, retry_after: int = 2) -> ProblemError:
    return ProblemError(
        503,
        "Service Unavailable",
        f"{detail}; retry after {retry_after} s",
        kind="dependency-unavailable",
        headers={"Retry-After": str(retry_after)},
    )


def validation_problem(exc: ValidationError, *, prefix: str = "") -> ProblemError:
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        errors.append(
            {"field": f"{prefix}{loc}" if loc else prefix.rstrip(".") or "body", "message": err["msg"]}
        )
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return ProblemError(422, "Validation Failed", detail, kind="validation-failed", errors=errors)


def _nul_character_at(value: Any, path: str = "") -> str | None:
    """Where a string (or key) holds U+0000, as a field path; None when nowhere.

    Valid JSON, but no text column, Kubernetes object or header can hold it (PostgreSQL refuses
    it deep inside a query, as an error no handler expects). Refused here, once, for every
    service, as a 422 naming the field.
    """
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return where.replace("\x00", "\\u0000")
            found = _nul_character_at(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_character_at(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def require_json(request: web.Request) -> None:
    """415 unless the body is declared JSON (for a handler that must refuse before it reads the body)."""
    if request.content_type != "application/json":
        raise ProblemError(
            415,
            "Unsupported Media Type",
            "send the body as JSON with Content-Type: application/json",
            kind="unsupported-media-type",
        )


def _too_deep(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than `limit` (iterative: a hostile body cannot recurse us)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def too_large(detail: str) -> ProblemError:
    return ProblemError(
        422,
        "Validation Failed",
        detail,
        kind="validation-failed",
        errors=[{"field": "body", "message": detail}],
    )


def decode_json(raw: bytes) -> Any:
    """JSON with limits: 400 when it does not parse, 422 when it nests deeper than `MAX_JSON_DEPTH`
    or holds an integer longer than Python converts (`ValueError`), never a `RecursionError`."""
    try:
        data = json.loads(raw or b"null")
    except RecursionError:
        raise too_large(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ProblemError(
            400, "Malformed JSON", f"the body is not valid JSON: {exc}", kind="malformed-json"
        ) from exc
    except UnicodeDecodeError:
        raise ProblemError(
            400, "Malformed JSON", "the body is not valid UTF-8 JSON", kind="malformed-json"
        ) from None
    except ValueError:  # int('9' * 5000): longer than sys.get_int_max_str_digits()
        raise too_large("the body holds a number with more digits than any field accepts") from None
    if _too_deep(data, MAX_JSON_DEPTH):
        raise too_large(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return data


def query_int(request: web.Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """An integer query parameter in [minimum, maximum]: ASCII digits only (no `²`, no `1_000`, no
    4,300-digit strings), else a 422 naming the parameter."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not INTEGER_RE.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise Invalid(name, f"must be a whole number from {minimum} to {maximum}")
    return int(raw)


async def read_json(request: web.Request, model: type[M]) -> M:
    """Decode a JSON body into `model`: 415 for another type, 400 for bad JSON, 422 for bad values."""
    require_json(request)
    data = decode_json(await request.read())
    if not isinstance(data, dict):
        raise ProblemError(
            422,
            "Validation Failed",
            "the body must be a JSON object",
            kind="validation-failed",
            errors=[{"field": "body", "message": "must be a JSON object"}],
        )
    where = _nul_character_at(data)
    if where is not None:
        raise ProblemError(
            422,
            "Validation Failed",
            f"{where}: must not contain the NUL character (\\u0000)",
            kind="validation-failed",
            errors=[{"field": where, "message": "must not contain the NUL character (\\u0000)"}],
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc) from exc


def path_name(request: web.Request, key: str) -> str:
    """A DNS-1123 name from the path; anything else cannot exist, so it is a 404."""
    value = request.match_info[key]
    if len(value) > 40 or not NAME_RE.match(value):
        raise ProblemError(404, "Not Found", f"{key} {value[:50]!r} does not exist", kind="not-found")
    return value


def json_response(model: BaseModel | Mapping[str, Any], status: int = 200) -> web.Response:
    text = model.model_dump_json() if isinstance(model, BaseModel) else json.dumps(model, default=str)
    return web.Response(status=status, text=text, content_type="application/json")


def made(
    request: web.Request, target: str, body: BaseModel | Mapping[str, Any], status: int = 201
) -> web.Response:
    """The answer to a change that made `target` (an id or a path): named for the audit trail, then
    answered with `body` (201 created, 202 accepted)."""
    audit_target(request, target)
    return json_response(body, status)


__all__ = ["NAME_PATTERN", "PROBLEM_JSON", "bearer_token"]  # re-exported for entry points


class Api:
    """Declares routes once: aiohttp routing, admin auth and the OpenAPI document."""

    def __init__(self, app: web.Application, *, title: str, version: str) -> None:
        self.app = app
        self.title = title
        self.version = version
        self.routes: list[RouteDoc] = []

    def route(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        summary: str,
        auth: Need | Literal["admin"] = "platform",
        action: str | None = None,
        request: type[BaseModel] | None = None,
        responses: dict[int, type[BaseModel] | None] | None = None,
        query: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Declare a route: what it needs (`auth`: a role, `platform`, `ci` or `none`), what a change
        is called in the audit trail (`action`), and its OpenAPI description."""
        need: Need = "platform" if auth == "admin" else auth
        name = action or default_action(method.upper(), path)
        self.app.router.add_route(method, path, guard(handler, need=need, action=name))
        self.routes.append(
            RouteDoc(
                method.upper(), path, summary, need, request, responses or {200: None}, query or {}, name
            )
        )

    def openapi(self) -> dict[str, Any]:
        return openapi_document(self.routes, title=self.title, version=self.version)


API = web.AppKey("api", Api)


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def create_base_app(
    *,
    service: str,
    version: str,
    admin_token: SecretStr | None = None,
    client_max_size: int = 1024 * 1024,
    preauth: PreAuthSettings | None = None,
) -> tuple[web.Application, Api]:
    """The app and its route table; `preauth` limits refused credentials per client address
    (read from the environment when the service's settings do not carry it)."""
    registry = CollectorRegistry()
    requests_total = Counter(
        "landfall_http_requests_total", "HTTP requests", ["route", "method", "status"], registry=registry
    )
    latency = Histogram(
        "landfall_http_request_seconds",
        "HTTP request latency",
        ["route", "method"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
    )

    @web.middleware
    async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Take the caller's `X-Request-Id` (if it is a sane token) or make one; answer with it,
        put it in every log line of the request, the audit items and problem documents."""
        given = request.headers.get("X-Request-Id", "")
        rid = given if REQUEST_ID_RE.fullmatch(given) else uuid.uuid4().hex
        request[REQUEST_ID_KEY] = rid
        reset = request_id_var.set(rid)
        try:
            response = await handler(request)
        finally:
            request_id_var.reset(reset)
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
        return response

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            if request.content_length is not None and request.content_length > client_max_size:
                raise ProblemError(
                    413,
                    "Content Too Large",
                    f"the body is larger than {client_max_size} bytes",
                    kind="content-too-large",
                )
            response = await handler(request)
            status = response.status
            return response
        except ProblemError as exc:
            status = exc.status
            return problem_response(exc)
        except DomainError as exc:  # the one place where domain errors become HTTP
            status = exc.status
            return problem_response(ProblemError.from_domain(exc))
        except DependencyUnavailable as exc:
            status = 503
            log.warning("dependency unavailable", extra={"path": request.path, "error": str(exc)})
            return problem_response(unavailable(str(exc), exc.retry_after_seconds))
        except web.HTTPRequestEntityTooLarge:
            status = 413
            return problem_response(
                ProblemError(413, "Content Too Large", "the body is too large", kind="content-too-large")
            )
        except web.HTTPException as exc:
            status = exc.status
            if exc.status < 400:
                raise
            title = exc.reason or "Error"
            return problem_response(
                ProblemError(
                    exc.status,
                    title,
                    exc.text or title,
                    kind=title.lower().replace(" ", "-"),
                    headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
                )
            )
        except Exception:
            status = 500
            log.exception("unhandled error", extra={"path": request.path, "method": request.method})
            return problem_response(
                ProblemError(500, "Internal Server Error", "an unexpected error happened")
            )
        finally:
            route = _route_label(request)
            requests_total.labels(route, request.method, str(status)).inc()
            latency.labels(route, request.method).observe(time.perf_counter() - started)

    app = web.Application(middlewares=[request_ids, middleware], client_max_size=client_max_size)
    app[READY_CHECKS] = {}
    app[METRICS] = registry
    app[ADMIN_TOKEN] = admin_token or SecretStr("")
    # The admin token only; a service that accepts org API keys replaces it (service.access_ctx).
    app[AUTHENTICATOR] = Authenticator(admin_token=app[ADMIN_TOKEN])
    app[PREAUTH] = AddressLimiter(preauth or PreAuthSettings())
    api = Api(app, title=f"Landfall {service}", version=version)
    app[API] = api

    async def healthz(_: web.Request) -> web.Response:
        return json_response({"status": "ok", "service": service})

    async def readyz(request: web.Request) -> web.Response:
        results: dict[str, str] = {}
        for name, check in request.app[READY_CHECKS].items():
            try:
                await check()
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"unavailable: {type(exc).__name__}"
        ok = all(v == "ok" for v in results.values())
        body = {"status": "ready" if ok else "not ready", "checks": results}
        return web.json_response(body, status=200 if ok else 503, headers={} if ok else {"Retry-After": "2"})

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(request.app[METRICS]), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(request.app[API].openapi())

    api.route("GET", "/healthz", healthz, summary="liveness", auth="none")
    api.route(
        "GET",
        "/readyz",
        readyz,
        summary="readiness: real checks of NATS, PostgreSQL, Vault",
        auth="none",
        responses={200: None, 503: None},
    )
    api.route("GET", "/metrics", metrics, summary="Prometheus metrics", auth="none")
    api.route("GET", "/openapi.json", openapi, summary="this document", auth="none")
    return app, api


def serve(create_app: Callable[[Any], web.Application], settings: Any) -> None:
    """Every service's `__main__`: JSON logs, the app, serve until SIGTERM (in-flight work finishes)."""
    from libs.runtime.logs import setup_logging

    setup_logging(service=settings.service_name, level=settings.log_level, fmt=settings.log_format)
    run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        shutdown_timeout=settings.shutdown_timeout_seconds,
    )


def run(app: web.Application, *, host: str, port: int, shutdown_timeout: float) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests get `shutdown_timeout` to finish."""
    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=shutdown_timeout,
        access_log=None,
        print=None,
        handle_signals=True,
    )

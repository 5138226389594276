"""What every console handler shares: the session cookie, CSRF, rendering, and API refusals as pages.

What is subtle
--------------
* The session cookie is HttpOnly and SameSite=Strict, and Secure whenever the request came over
  HTTPS (directly, or through a proxy that says so in `X-Forwarded-Proto`) or the settings say the
  console is always behind TLS. It carries only a random id; the key stays in the server's memory.
* CSRF: every form carries the session's token (`csrf`), htmx requests send it as `X-CSRF-Token`
  (set once on `<body hx-headers>`); a POST without the right one changes nothing (403). The
  sign-in form has no session yet, so it is a double submit: a random cookie and the same value
  in the form.
* Pages are HTML, so API refusals become pages too: 404 (an unknown object, or another org's:
  the API does not tell them apart and neither do we), 403 with the API's detail (the role
  needed), 401 (the key stopped working: the session ends), 503. Never a stack trace.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from libs.runtime.errors import ProblemError
from services.console.clients.landfall import ApiProblem
from services.console.domain import Session, field_errors
from services.console.settings import Settings
from services.console.usecases.live import Feed
from services.console.usecases.pages import Console
from services.console.usecases.sessions import SessionStore, SignIn

SESSION_COOKIE = "landfall_session"
SIGNIN_COOKIE = "landfall_signin"
SESSION_KEY = web.RequestKey("console_session", Session)

SETTINGS = web.AppKey("console_settings", Settings)
SESSIONS = web.AppKey("console_sessions", SessionStore)
SIGN_IN = web.AppKey("console_sign_in", SignIn)
CONSOLE = web.AppKey("console_pages", Console)
FEED = web.AppKey("console_feed", Feed)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Page = Callable[..., Awaitable[web.StreamResponse]]
FormData = MultiDictProxy[str | bytes | bytearray | web.FileField]
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none';"
    " form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def secure(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.app[SETTINGS].secure_cookies or request.secure or forwarded == "https"


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", secure=secure(request), path="/")


def session(request: web.Request) -> Session:
    found = request.get(SESSION_KEY)
    if not isinstance(found, Session):  # only reachable through a route without `signed_in`
        raise web.HTTPSeeOther("/sign-in")
    return found


def signed_in(handler: Handler) -> Handler:
    """The page needs a live session; without one, the sign-in page (then back here). The route
    table wraps every page that is not public in it (routes.py)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        found = request.app[SESSIONS].get(request.cookies.get(SESSION_COOKIE))
        if found is None:
            if (
                request.method != "GET"
                or request.headers.get("HX-Request")
                or request.path.endswith("/events")
            ):
                raise web.HTTPUnauthorized(text="your session ended: sign in again")
            back = quote(request.path_qs, safe="") if request.path != "/" else ""
            raise web.HTTPSeeOther(f"/sign-in?next={back}")
        request[SESSION_KEY] = found
        try:
            return await handler(request)
        except Shown as shown:
            return shown.response
        except ApiProblem as exc:
            return refusal(request, exc)
        except ProblemError as exc:  # a name in the path that cannot exist (`path_name`): a page too
            if exc.status != 404:
                raise
            return refusal(request, ApiProblem(404, "Not Found", exc.detail))

    return wrapped


async def form(request: web.Request) -> FormData:
    """The posted form, once its CSRF token matched the session's (else 403, nothing changed)."""
    data = await request.post()
    given = data.get("csrf") or request.headers.get("X-CSRF-Token", "")
    if not isinstance(given, str) or not hmac.compare_digest(given, session(request).csrf):
        raise web.HTTPForbidden(text="the form is out of date (CSRF check failed): reload the page")
    return data


def signin_token(request: web.Request) -> str:
    token = request.cookies.get(SIGNIN_COOKIE, "")
    return token if len(token) >= 32 else secrets.token_urlsafe(32)


def render(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    found = request.get(SESSION_KEY)
    response = aiohttp_jinja2.render_template(
        template,
        request,
        {"session": found if isinstance(found, Session) else None, "path": request.path, **context},
        status=status,
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def form_page(template: str, context: Callable[[web.Request], Awaitable[dict[str, Any]]]) -> Page:
    """A page that holds a form: `template` over `context(request)`. What a change shows on it comes
    as keywords (a `created` object shown once, the `values` typed) that replace the context's
    defaults, with the API's `errors` by field and the answer's `status`."""

    async def draw(
        request: web.Request, *, errors: dict[str, str] | None = None, status: int = 200, **shown: Any
    ) -> web.StreamResponse:
        page = {**await context(request), **shown, "errors": errors or {}}
        return render(request, template, page, status=status)

    return draw


def refusal(request: web.Request, exc: ApiProblem) -> web.StreamResponse:
    if exc.status == 401:
        request.app[SESSIONS].close(request.cookies.get(SESSION_COOKIE))
        if request.headers.get("HX-Request"):
            raise web.HTTPUnauthorized(text="your key stopped working: sign in again")
        raise web.HTTPSeeOther("/sign-in?ended=1")
    titles = {403: "Not allowed", 404: "Not found", 409: "Conflict", 503: "Landfall is unavailable"}
    return render(
        request,
        "problem.html",
        {"title": titles.get(exc.status, exc.title), "problem": exc},
        status=exc.status if exc.status in titles or exc.status in (413, 422) else 502,
    )


def errors_of(exc: ApiProblem, fields: tuple[str, ...]) -> dict[str, str]:
    errors = field_errors(exc.errors, known=fields)
    if not exc.errors:
        errors[""] = exc.detail
    return errors


class Shown(Exception):
    """Raised to answer with `response` instead: a form shown again, with the API's refusal on it."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response


@asynccontextmanager
async def shown_again(
    page: Callable[..., Awaitable[web.StreamResponse]],
    *,
    fields: tuple[str, ...] | None = (),
    refused: tuple[int, ...] = (403, 409, 422),
) -> AsyncIterator[None]:
    """Around a change: an API refusal in `refused` answers `page(errors=…, status=…)`, the form
    again with the errors beside their `fields` (None: the problem's detail on top), instead of a
    problem page. Any other refusal is `signed_in`'s to show."""
    try:
        yield
    except ApiProblem as exc:
        if exc.status not in refused:
            raise
        errors = {"": exc.detail} if fields is None else errors_of(exc, fields)
        raise Shown(await page(errors=errors, status=exc.status)) from None

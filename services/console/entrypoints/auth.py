"""Sign in with an org API key, sign out."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from aiohttp import web

from libs.runtime.access import PREAUTH
from libs.runtime.ratelimit import retry_after_header
from services.console.clients.landfall import ApiProblem
from services.console.domain import SignInRefused
from services.console.entrypoints.web import (
    SESSION_COOKIE,
    SESSIONS,
    SETTINGS,
    SIGN_IN,
    SIGNIN_COOKIE,
    form,
    render,
    set_cookie,
    signin_token,
)


def _next(value: object) -> str:
    """Only a path of this console (no `//host`, no scheme): never an open redirect."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return "/components"
    parts = urlsplit(value)
    return "/components" if parts.scheme or parts.netloc else value


async def sign_in_page(
    request: web.Request, *, error: str = "", org: str = "", status: int = 200
) -> web.StreamResponse:
    token = signin_token(request)
    notice = "Your session ended: sign in again." if request.query.get("ended") else ""
    response = render(
        request,
        "sign_in.html",
        {
            "csrf": token,
            "error": error,
            "notice": notice,
            "org": org or request.app[SETTINGS].default_org,
            "next": _next(request.query.get("next")),
        },
        status=status,
    )
    set_cookie(request, response, SIGNIN_COOKIE, token)
    return response


async def sign_in(request: web.Request) -> web.StreamResponse:
    data = await request.post()
    given, expected = data.get("csrf", ""), request.cookies.get(SIGNIN_COOKIE, "")
    if not isinstance(given, str) or not expected or not hmac.compare_digest(given, expected):
        return await sign_in_page(request, error="The form is out of date: try again.", status=403)
    key, org = data.get("api_key", ""), data.get("org", "")
    org = org.strip() if isinstance(org, str) and org.strip() else request.app[SETTINGS].default_org
    limiter = request.app[PREAUTH]  # refused sign-ins per browser address, before the API is called
    wait = limiter.wait(request)
    if wait is not None:
        return await _too_many(request, org, retry_after_header(wait))
    try:
        session = await request.app[SIGN_IN](key=key if isinstance(key, str) else "", org=org)
    except SignInRefused as exc:
        limiter.refused(request)
        return await sign_in_page(request, error=str(exc), org=org, status=401)
    except ApiProblem as exc:
        if exc.status == 429:  # the API's own limit: the same page, not "unavailable"
            return await _too_many(request, org, exc.retry_after or "60")
        return await sign_in_page(request, error=exc.detail, org=org, status=503)
    response = web.HTTPSeeOther(_next(data.get("next")))
    set_cookie(request, response, SESSION_COOKIE, session.id)
    response.del_cookie(SIGNIN_COOKIE, path="/")
    raise response


async def _too_many(request: web.Request, org: str, retry_after: str) -> web.StreamResponse:
    error = f"Too many refused sign-ins from your address: try again in {retry_after} seconds."
    response = await sign_in_page(request, error=error, org=org, status=429)
    response.headers["Retry-After"] = retry_after
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    await form(request)
    request.app[SESSIONS].close(request.cookies.get(SESSION_COOKIE))
    response = web.HTTPSeeOther("/sign-in")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response

"""The component page's live updates: server-sent events, woken by the bus, read from the API.

Why SSE fed by the bus (and not a long-poll of the API): the orchestrator already announces every
status change on NATS (`DeploymentChanged`, what wakes CI's long-poll in the gateway), so a page
hears of a change within milliseconds at no cost while nothing happens, and the console needs no
polling loop per open tab. The notice only wakes the stream; what it sends is read from the API
with the page's own key (pipeline and history, rendered by the same templates as the page), so a
person sees nothing on the live page that the page itself would not show them.

What is subtle
--------------
* The stream subscribes before its first read, so a change between the page's render and the
  stream's start is not missed (the first read already includes it).
* A burst of notices costs one read: the wake-up is a flag that is cleared before reading.
* At shutdown the feed wakes every stream to end it (`Feed.close`, on the app's `on_shutdown`),
  so an open tab does not hold a stopping console for its grace period; the browser reconnects.
* A comment line every `KEEPALIVE` seconds tells a proxy the stream is alive and us when the
  browser has gone (the write fails); the session is checked again at each wake-up, so a signed-out
  or expired session stops its streams.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp_jinja2
from aiohttp import web

from services.console.clients.landfall import ApiProblem
from services.console.entrypoints.components import names
from services.console.entrypoints.web import CONSOLE, FEED, SESSION_COOKIE, SESSIONS, session

KEEPALIVE = 15.0


def _event(name: str, html: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {name}\n{lines}\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    project, name = names(request)
    s = session(request)
    console = request.app[CONSOLE]
    await console.get(s, console.component_path(s, project, name))  # 404 before any stream opens
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    env = aiohttp_jinja2.get_env(request.app)
    with request.app[FEED].listen((s.org, project, name)) as wake:
        wake.set()
        while True:
            try:
                await asyncio.wait_for(wake.wait(), timeout=KEEPALIVE)
            except TimeoutError:
                try:
                    await response.write(b": keepalive\n\n")
                except (ConnectionError, RuntimeError):
                    break
                continue
            wake.clear()
            if request.app[FEED].closed:
                break
            if request.app[SESSIONS].get(request.cookies.get(SESSION_COOKIE)) is None:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await response.write(b"event: signed-out\ndata: \n\n")
                break
            try:
                view = await console.live(s, project, name)
            except ApiProblem:
                continue  # the page keeps what it shows; the next notice tries again
            context = {"session": s, "project": project, "name": name, **view}
            try:
                await response.write(_event("pipeline", env.get_template("_pipeline.html").render(context)))
                await response.write(_event("history", env.get_template("_history.html").render(context)))
            except (ConnectionError, RuntimeError):
                break
    return response

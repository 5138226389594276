"""The intake floor: the least a webhook endpoint can do and still be durable.

`python -m bench.floor --port P --nats-url URL [--nats-creds FILE] [--prefix X]`
serves `POST /v1/webhooks/deploy` with a bare aiohttp handler that parses the
JSON body, publishes it (with a fresh id as `Nats-Msg-Id`, as the gateway does)
to a file-backed JetStream stream of its own, awaits the acknowledgement and
answers 202. No authentication, no validation, no database, no logging, no
metrics.

It runs as its own process on the same nats-server as the stack, connected as
the gateway's NATS user, and the load generator sends it byte for byte the
requests it sends the gateway: gateway / floor is what Landfall's own work
costs on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import uuid

import nats
import nats.errors
import nats.js.errors
from aiohttp import web
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

JS = web.AppKey("js", JetStreamContext)


def names(prefix: str) -> tuple[str, str]:
    """(subject, stream) under the stack's bus prefix, like Landfall's own subjects and streams."""
    stream = "".join(c if c.isalnum() else "_" for c in f"{prefix}BENCH_FLOOR").strip("_").upper()
    return f"{prefix}bench.floor.pushed", stream


def create_app(js: JetStreamContext, subject: str) -> web.Application:
    async def deploy(request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        deployment_id = uuid.uuid4().hex
        payload = json.dumps({"deployment_id": deployment_id, "event": event}).encode()
        await request.app[JS].publish(subject, payload, headers={"Nats-Msg-Id": deployment_id})
        return web.json_response({"deployment_id": deployment_id, "status": "pending"}, status=202)

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app[JS] = js
    app.router.add_post("/v1/webhooks/deploy", deploy)
    app.router.add_get("/readyz", ready)
    return app


async def serve(args: argparse.Namespace) -> None:
    subject, stream = names(args.prefix)
    nc = await nats.connect(
        args.nats_url,
        name="bench-floor",
        user_credentials=args.nats_creds,
        allow_reconnect=False,
        connect_timeout=5,
    )
    js = nc.jetstream(timeout=5)
    # The settings of Landfall's intake stream: file storage, 120 s de-duplication window.
    config = StreamConfig(
        name=stream,
        subjects=[subject],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=3600,
        duplicate_window=120,
    )
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        await js.update_stream(config)
    runner = web.AppRunner(create_app(js, subject), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()
    await js.delete_stream(stream)
    await nc.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--nats-creds", help="a NATS .creds file (nats-server in operator mode)")
    parser.add_argument("--prefix", default="", help="subject/stream prefix, as LANDFALL_BUS_PREFIX")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except (OSError, nats.errors.Error) as exc:
        sys.exit(f"floor: cannot start: {exc!r}")


if __name__ == "__main__":
    main()

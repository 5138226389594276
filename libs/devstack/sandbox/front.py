"""`SandboxCluster`: the sandbox's HTTP server, one aiohttp front before one kmock emulator.

Object URLs go to `handlers.ObjectApi`; everything else (`/version`, `/api`, `/apis/...`
discovery, unknown URLs) goes to the emulator's own handler, awaited in-process (no second
socket), with its 404s rewritten into real `NotFound` Statuses. A log of every write
(`writes`, `GET /_sandbox/writes`) lets tests prove that no deployment was applied twice.

Subtle: kmock renders errors raised in its handler as Statuses only while the emulator is
entered (`async with`), so `start` enters it and `stop` leaves it; and kmock keeps every
error it served in memory, so the front clears them after each forwarded request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import kmock
from aiohttp import web

from libs.devstack.sandbox import journal
from libs.devstack.sandbox.admission import AdmissionRule, decide, parse_rule
from libs.devstack.sandbox.controller import Controller, FailureRule
from libs.devstack.sandbox.errors import ApiError, bad_request, gone_resource, status_body
from libs.devstack.sandbox.handlers import ObjectApi, Reply, Target, parse_body, parse_path, truthy
from libs.devstack.sandbox.selectors import Filter, parse_label_selector
from libs.devstack.sandbox.store import Event, Store
from libs.devstack.sandbox.values import JsonDict, json_array, json_object

log = logging.getLogger(__name__)

DEPLOYMENT_ID_ANNOTATION: Final = "landfall.dev/deployment-id"


_WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


_INITIAL_NAMESPACES: Final = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclasses.dataclass(frozen=True)
class SandboxWrite:
    """One write request as the sandbox saw it (`SandboxCluster.writes`, `GET /_sandbox/writes`)."""

    seq: int
    at: str
    method: str
    path: str
    group: str | None
    resource: str | None
    namespace: str | None
    name: str | None
    subresource: str | None
    deployment_id: str | None
    status: int

    def as_dict(self) -> JsonDict:
        return dataclasses.asdict(self)


def _deployment_id_of(body: Any) -> str | None:
    """The deployment-id annotation a write request sets, for objects and JSON patches alike."""

    def from_meta(meta: Any) -> str | None:
        value = json_object(json_object(meta).get("annotations")).get(DEPLOYMENT_ID_ANNOTATION)
        return value if isinstance(value, str) else None

    if isinstance(body, dict):
        return from_meta(body.get("metadata"))
    escaped = DEPLOYMENT_ID_ANNOTATION.replace("~", "~0").replace("/", "~1")
    for op in json_array(body):
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace"):
            continue
        path, value = op.get("path"), op.get("value")
        if path == f"/metadata/annotations/{escaped}" and isinstance(value, str):
            return value
        if path == "/metadata/annotations" and (found := from_meta({"annotations": value})):
            return found
        if path == "/metadata" and (found := from_meta(value)):
            return found
    return None


class SandboxCluster:
    """A Kubernetes API on 127.0.0.1 backed by `kmock.KubernetesEmulator`, with simulated controllers.

    Use as `async with SandboxCluster() as cluster:` (or `start()`/`stop()`);
    `cluster.url` is the API server URL. `port=0` picks a free port.

    Besides the Kubernetes API it serves, for tests in other processes:

    * `GET /_sandbox/writes[?since=SEQ][&deployment_id=ID]` -> JSON list of `SandboxWrite.as_dict()`;
      `DELETE /_sandbox/writes` clears the log;
    * `POST /_sandbox/failure-rules` `{"image_contains", "reason", "message"?}` -> 201;
      `GET` lists the rules, `DELETE` removes them all;
    * `POST /_sandbox/admission-rules` `{"image_contains", "status"?, "message"?, "answer"?}` -> 201,
      `DELETE` clears them: writes naming such an image are denied (admission.py);
    * `POST /_sandbox/pause-controller`, `POST /_sandbox/resume-controller` -> `{"paused", "enabled"}`;
    * `GET /healthz`, `/livez`, `/readyz` -> `ok`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        controller: bool = True,
        require_namespaces: bool = True,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._emulator = kmock.KubernetesEmulator()
        self._emulator.resources.load_bundled()
        self._store = Store(self._emulator, require_namespaces=require_namespaces)
        self._rules: list[FailureRule] = []
        self._admission: list[AdmissionRule] = []
        self._controller = Controller(self._store, self._rules) if controller else None
        self._objects = ObjectApi(self._store)
        self._writes: list[SandboxWrite] = []
        self._durable: Path | None = None  # `open_durable`: objects and writes on disk (journal.py)
        self._changes: journal.Changes | None = None  # the durable store's events since the snapshot
        self._runner: web.ServerRunner | None = None
        self._entered = False
        for namespace in _INITIAL_NAMESPACES:
            self._store.create(self._store.namespaces, None, {"metadata": {"name": namespace}})

    # Lifecycle.

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the sandbox cluster is already started")
        await self._emulator.__aenter__()  # kmock renders handler errors as Statuses only while entered
        self._entered = True
        self._store.reopen()
        try:
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self._host, self._requested_port))
            except OSError:
                sock.close()
                raise
            self._port = int(sock.getsockname()[1])
            server = web.Server(self._handle, handler_cancellation=True, access_log=None)
            self._runner = web.ServerRunner(server, shutdown_timeout=2.0)
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
            if self._controller is not None:
                self._controller.start()
        except BaseException:
            await self.stop()
            raise
        log.info("sandbox Kubernetes API listening on %s", self.url)

    async def stop(self) -> None:
        if self._controller is not None:
            await self._controller.stop()
        self._store.close_watchers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._entered:
            self._entered = False
            await self._emulator.__aexit__(None, None, None)
        # A restarted API server keeps its address (and its objects, like etcd): clients' kubeconfigs
        # still point at it, which is what a test of "the Kubernetes API went away and came back" needs.
        if self._port is not None:
            self._requested_port = self._port
        self._port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    def save_state(self, path: Path) -> None:
        """Write every object to `path` (atomically: a crash mid-write keeps the previous file)."""
        if self._changes is not None:
            self._changes.flush(len(self._writes))
        journal.save_objects(path, self._store.export(), len(self._writes), rv=self._store.resource_version)
        if self._changes is not None and path == self._durable:
            self._changes.truncate()

    def flush_durable(self) -> None:
        """Durable mode: what changed since the last flush, on disk (one line; the snapshot rewritten
        once enough lines have gathered)."""
        if self._changes is None or self._durable is None:
            return
        self._changes.flush(len(self._writes))
        if self._changes.due:
            self.save_state(self._durable)

    def _changed(self, event: Event) -> None:
        if self._changes is not None:
            kind = event.kind
            self._changes.add(
                {"group": kind.group, "version": kind.version, "plural": kind.plural}, event.type, event.obj
            )

    def load_state(self, path: Path) -> int:
        """Objects saved by `save_state`, back in the store; 0 when there is no file yet."""
        objects, _ = journal.load_objects(path)
        return self._store.restore(objects) if objects else 0

    def open_durable(self, path: Path) -> int:
        """Keep the objects in `path` and the write log beside it (journal.py): what a write was
        answered survives a SIGKILL. Loads both; the number of objects restored."""
        objects, last_seq = journal.load_objects(path)
        restored = self._store.restore(objects) if objects else 0
        log_path = journal.writes_path(path)
        self._writes = [SandboxWrite(**entry) for entry in journal.load_writes(log_path, last_seq)]
        journal.rewrite_writes(log_path, self._writes)
        self._durable = path
        self._changes = journal.Changes(path)
        self.save_state(path)  # what was replayed, as the new snapshot; the changes file starts empty
        self._store.listen(self._changed)
        return restored

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the sandbox cluster is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sandbox cluster is not started")
        return self._port

    @property
    def emulator(self) -> kmock.KubernetesEmulator:
        """The kmock emulator: its `objects` hold the cluster state, `resources` the discovery data."""
        return self._emulator

    # In-process inspection and control.

    @property
    def writes(self) -> list[SandboxWrite]:
        return list(self._writes)

    def clear_writes(self) -> None:
        self._writes.clear()
        if self._durable is not None:
            journal.rewrite_writes(journal.writes_path(self._durable), [])
            self.save_state(self._durable)

    @property
    def resource_version(self) -> int:
        return self._store.resource_version

    def get(self, api_version: str, plural: str, namespace: str | None, name: str) -> JsonDict | None:
        """One stored object (a copy), e.g. `cluster.get("apps/v1", "deployments", "ns", "web")`."""
        return self._store.get(self._store.kind_for(api_version, plural), namespace, name)

    def list_objects(
        self, api_version: str, plural: str, namespace: str | None = None, labels: str = ""
    ) -> list[JsonDict]:
        """Stored objects (copies), optionally in one namespace and matching a label selector."""
        kind = self._store.kind_for(api_version, plural)
        return self._store.select(Filter(kind, namespace, tuple(parse_label_selector(labels))))

    @property
    def failure_rules(self) -> list[FailureRule]:
        return list(self._rules)

    def add_failure_rule(self, image_substring: str, reason: str, message: str = "") -> FailureRule:
        """Make pods whose image contains `image_substring` fail with `reason` (affects new rollouts)."""
        if not image_substring or not reason:
            raise ValueError("a failure rule needs an image substring and a reason")
        rule = FailureRule(image_substring, reason, message)
        self._rules.append(rule)
        return rule

    def clear_failure_rules(self) -> None:
        """Remove all rules; deployments failing because of one recover on the next resync."""
        self._rules.clear()

    def pause_controller(self) -> None:
        if self._controller is not None:
            self._controller.pause()

    def resume_controller(self) -> None:
        if self._controller is not None:
            self._controller.resume()

    @property
    def controller_paused(self) -> bool:
        return self._controller is not None and self._controller.paused

    @property
    def controller_skipped(self) -> int:
        """How often the paused controller woke to a change and left it alone."""
        return self._controller.skipped if self._controller is not None else 0

    # Request handling.

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            if request.path == "/_sandbox" or request.path.startswith("/_sandbox/"):
                return await self._serve_sandbox(request)
            if request.path in ("/healthz", "/livez", "/readyz") and request.method == "GET":
                return web.Response(text="ok")
            target = parse_path(request.path)
            if target is None:
                response = await self._forward(request)
                self._record(request, None, b"", response.status, None)
                return response
            raw = await request.read()
            try:
                kind = self._objects.resolve(target)
                if request.method == "GET" and (target.watch or truthy(request.query.get("watch"))):
                    return await self._objects.serve_watch(request, kind, target)
                denied = self._admit(request, target, raw)
                reply = Reply(*denied.reply()) if denied else self._objects.serve(request, kind, target, raw)
            except ApiError as exc:
                reply = Reply(exc.code, exc.body())
            self._record(request, target, raw, reply.status, reply.body)
            if self._durable is not None and request.method in _WRITE_METHODS and reply.status < 300:
                self.flush_durable()  # on disk before the client hears it was accepted
            if isinstance(reply.body, str):
                return web.Response(text=reply.body, status=reply.status)
            return web.json_response(reply.body, status=reply.status)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("sandbox failed on %s %s", request.method, request.path)
            body = status_body(500, "InternalError", f"sandbox internal error: {exc!r}")
            return web.json_response(body, status=500)

    def _admit(self, request: web.BaseRequest, target: Target, raw: bytes) -> AdmissionRule | None:
        """The admission rule that denies this write, if one does (admission.py)."""
        if not self._admission or request.method not in ("POST", "PUT", "PATCH") or target.subresource:
            return None
        try:
            return decide(self._admission, parse_body(raw, request.content_type))
        except ApiError:
            return None

    async def _forward(self, request: web.BaseRequest) -> web.StreamResponse:
        """Discovery, /version and unknown URLs: the emulator's own handler, in-process."""
        if request.path != "/" and request.path.endswith("/"):
            # kubernetes_asyncio asks for `/version/` and `/apis/`; kmock routes only the exact paths.
            request = request.clone(rel_url=request.rel_url.with_path(request.path.rstrip("/")))
        response = await self._emulator(request)
        self._emulator.errors.clear()  # kmock keeps them for test assertions; we answered them already
        if response.status == 404 and isinstance(response, web.Response) and not response.prepared:
            return gone_resource().response()
        return response

    def _record(
        self, request: web.BaseRequest, target: Target | None, raw: bytes, status: int, reply: Any
    ) -> None:
        if request.method not in _WRITE_METHODS:
            return
        try:
            body = parse_body(raw, request.content_type)
        except ApiError:
            body = None
        name = target.name if target is not None else None
        if name is None and request.method == "POST":
            reply_meta = json_object(json_object(reply).get("metadata")) if status < 300 else {}
            found = reply_meta.get("name") or json_object(json_object(body).get("metadata")).get("name")
            name = found if isinstance(found, str) else None
        namespace = target.namespace if target is not None else None
        write = SandboxWrite(
            seq=len(self._writes) + 1,
            at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            method=request.method,
            path=request.path,
            group=target.group if target is not None else None,
            resource=target.plural if target is not None else None,
            namespace=namespace,
            name=name,
            subresource=target.subresource if target is not None else None,
            deployment_id=_deployment_id_of(body),
            status=status,
        )
        self._writes.append(write)
        if self._durable is not None:
            journal.append_write(journal.writes_path(self._durable), write)

    async def _serve_sandbox(self, request: web.BaseRequest) -> web.StreamResponse:
        path, method = request.path.rstrip("/"), request.method
        if path == "/_sandbox/writes":
            if method == "GET":
                since_text = request.query.get("since", "0")
                since = int(since_text) if since_text.isdigit() else 0
                wanted = request.query.get("deployment_id")
                writes = [w for w in self._writes if w.seq > since and wanted in (None, w.deployment_id)]
                return web.json_response([write.as_dict() for write in writes])
            if method == "DELETE":
                return _cleared(len(self._writes), self.clear_writes)
        elif path == "/_sandbox/failure-rules":
            if method == "GET":
                return web.json_response([rule.as_dict() for rule in self._rules])
            if method == "POST":
                try:
                    body = json_object(parse_body(await request.read()))
                    rule = self.add_failure_rule(
                        str(body.get("image_contains") or ""),
                        str(body.get("reason") or ""),
                        str(body.get("message") or ""),
                    )
                except (ApiError, ValueError) as exc:
                    return bad_request(f"expected {{image_contains, reason, message?}}: {exc}").response()
                return web.json_response(rule.as_dict(), status=201)
            if method == "DELETE":
                return _cleared(len(self._rules), self.clear_failure_rules)
        elif path == "/_sandbox/admission-rules":
            if method == "POST":
                try:
                    admission = parse_rule(json_object(parse_body(await request.read())))
                except (ApiError, ValueError) as exc:
                    return bad_request(
                        f"expected {{image_contains, status?, message?, answer?}}: {exc}"
                    ).response()
                self._admission.append(admission)
                return web.json_response(admission.as_dict(), status=201)
            if method == "DELETE":
                return _cleared(len(self._admission), self._admission.clear)
        elif path in ("/_sandbox/pause-controller", "/_sandbox/resume-controller"):
            if method == "POST":
                self.pause_controller() if path.endswith("pause-controller") else self.resume_controller()
                return web.json_response(
                    {"paused": self.controller_paused, "enabled": self._controller is not None}
                )
        else:
            return gone_resource().response()
        return ApiError(405, "MethodNotAllowed", f"{method} is not allowed on {path}").response()


def _cleared(count: int, clear: Callable[[], None]) -> web.Response:
    """A DELETE of one of the sandbox's lists (writes, rules): empties it, answers how many it held."""
    clear()
    return web.json_response({"cleared": count})

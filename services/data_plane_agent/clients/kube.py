"""The Kubernetes adapter: the only module that imports kubernetes_asyncio.

Typed methods over plain JSON objects (`dict`s), not the generated model
classes: the agent builds manifests as data (`domain/manifests.py`), and reading raw
JSON keeps fields the client's models do not know.

Subtle parts:
- Calls use `_preload_content=False`, so the client neither deserialises nor
  raises on non-2xx; `_call` maps statuses itself: 404 -> None, 409 -> Conflict,
  429/5xx and connection errors -> `KubeUnavailable` (retry), other 4xx ->
  `KubeRejected` (this object cannot be written as it is: fail the deploy).
- Writes are GET -> (404) POST, else PATCH `application/merge-patch+json` with
  the full desired object. PUT is avoided on purpose: it needs the current
  resourceVersion and fails on any concurrent write, while a merge patch of the
  whole object converges. A 409 on create means someone created it meanwhile:
  patch it. A 409 on patch is retried.
- `changes()` runs a `watch.Watch` (field selector `metadata.name=<name>`) in a
  background task and only wakes the waiter; callers re-read the object. A watch
  that breaks is re-opened; callers also re-check on a timer, so a dead watch
  makes the agent slower, never wrong.
- One `ApiClient` per `Kube`, built explicitly from settings (never the
  library's global default configuration). Watches borrow it too:
  `watch.Watch()` builds a default `ApiClient` of its own, whose SSL context
  loads the system CA bundle, about 18 ms of CPU on the event loop for every
  rollout watched (half the agent's CPU at 50 deploys/s). A watch holds a
  pooled connection for as long as it runs, so at most `max_watches` run at
  once (half the pool by default); rollouts beyond that are followed by their
  timer alone.
- The client's session does not consult the environment per request (aiohttp's
  `trust_env` reads ~/.netrc and the proxy variables in a thread every time);
  the proxy is looked up once when the client is built (`_env_read_once`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import client, config, watch
from yarl import URL

from libs.runtime.errors import DependencyUnavailable

from ..domain.manifests import Body, Guard, Kind, strip_nulls
from ..settings import Settings

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "landfall-agent"

# kind -> (API class, snake_case resource name used in the generated method names)
_RESOURCES: dict[Kind, tuple[str, str]] = {
    "Namespace": ("core", "namespace"),
    "Deployment": ("apps", "deployment"),
    "Service": ("core", "service"),
    "Ingress": ("networking", "ingress"),
    "CronJob": ("batch", "cron_job"),
    "Job": ("batch", "job"),
    "ConfigMap": ("core", "config_map"),
    "Secret": ("core", "secret"),
    "Pod": ("core", "pod"),
    "RoleBinding": ("rbac", "role_binding"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontal_pod_autoscaler"),
}


class KubeConfigError(Exception):
    pass


class KubeUnavailable(DependencyUnavailable):
    """The API server cannot be reached or answered 429/5xx: try again later."""


class KubeRejected(Exception):
    """The API server refused a request for good (4xx): retrying the same request will not help."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Conflict(Exception):
    pass


def selector_string(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _matches(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


async def api_client_from(
    *, kubeconfig: Path | None, context: str | None = None, max_connections: int = 100
) -> client.ApiClient:
    """kubeconfig file if given; else the pod's service account; else $KUBECONFIG or ~/.kube/config."""
    cfg = client.Configuration()
    if kubeconfig is not None:
        if not kubeconfig.is_file():
            raise KubeConfigError(f"LANDFALL_KUBECONFIG={kubeconfig} does not exist")
        await config.load_kube_config(
            config_file=str(kubeconfig), context=context, client_configuration=cfg, persist_config=False
        )
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        default = Path(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]).expanduser()
        if not default.is_file():
            raise KubeConfigError(
                "no Kubernetes configuration: set LANDFALL_KUBECONFIG, run the agent in a pod,"
                " or create ~/.kube/config"
            )
        await config.load_kube_config(
            config_file=str(default), context=context, client_configuration=cfg, persist_config=False
        )
    cfg.connection_pool_maxsize = max_connections
    api = client.ApiClient(configuration=cfg)
    _env_read_once(api, cfg)
    return api


def _env_read_once(api: client.ApiClient, cfg: client.Configuration) -> None:
    """kubernetes_asyncio's session has aiohttp's `trust_env`, which reads ~/.netrc and the proxy
    variables in a worker thread on EVERY request: two thread hops per Kubernetes call, a sixth of
    the agent's CPU under load. The API server's proxy (HTTPS_PROXY/NO_PROXY) is looked up once here
    instead; netrc is irrelevant (the API server takes tokens and client certificates)."""
    rest = api.rest_client
    if cfg.proxy is None and cfg.host:
        with contextlib.suppress(LookupError):
            proxy, _ = get_env_proxy_for_url(URL(cfg.host))
            rest.proxy = str(proxy)
    rest.pool_manager._trust_env = False  # no public setter; aiohttp reads it per request


class Kube:
    def __init__(self, api: client.ApiClient, *, timeout: float = 10.0, max_watches: int = 50) -> None:
        self.api = api
        self.timeout = timeout
        # A watch holds a pooled connection for its whole life: keep some for ordinary requests.
        self._watch_slots = asyncio.Semaphore(max_watches)
        self._apis: dict[str, Any] = {
            "core": client.CoreV1Api(api),
            "apps": client.AppsV1Api(api),
            "batch": client.BatchV1Api(api),
            "networking": client.NetworkingV1Api(api),
            "rbac": client.RbacAuthorizationV1Api(api),
            "autoscaling": client.AutoscalingV2Api(api),
        }
        self._version = client.VersionApi(api)

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: Path | None,
        context: str | None = None,
        timeout: float = 10.0,
        max_connections: int = 100,
        max_watches: int = 50,
    ) -> Kube:
        api = await api_client_from(kubeconfig=kubeconfig, context=context, max_connections=max_connections)
        return cls(api, timeout=timeout, max_watches=min(max_watches, max(1, max_connections // 2)))

    @classmethod
    async def from_settings(cls, settings: Settings) -> Kube:
        return await cls.connect(
            kubeconfig=settings.kubeconfig,
            context=settings.kube_context,
            timeout=settings.kube_timeout_seconds,
            max_connections=settings.kube_max_connections,
            max_watches=settings.kube_max_watches,
        )

    async def close(self) -> None:
        await self.api.close()

    def _method(self, kind: Kind, verb: str, *, namespaced: bool = True) -> Callable[..., Awaitable[Any]]:
        group, resource = _RESOURCES[kind]
        api = self._apis[group]
        if kind == "Namespace":
            return getattr(api, f"{verb}_namespace")  # type: ignore[no-any-return]
        if not namespaced:  # list across namespaces
            return getattr(api, f"{verb}_{resource}_for_all_namespaces")  # type: ignore[no-any-return]
        return getattr(api, f"{verb}_namespaced_{resource}")  # type: ignore[no-any-return]

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> tuple[int, Any]:
        try:
            resp = await fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            try:
                raw = await resp.read()
                status = int(resp.status)
            finally:
                resp.release()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeUnavailable(f"Kubernetes API unreachable: {type(exc).__name__}") from exc
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"message": raw[:200].decode(errors="replace")}
        if status == 429 or status >= 500:
            raise KubeUnavailable(f"Kubernetes API answered {status}: {_message(data)}")
        return status, data

    @staticmethod
    def _raise(status: int, data: Any) -> None:
        reason = data.get("reason", "") if isinstance(data, dict) else ""
        raise KubeRejected(status, str(reason or "Rejected"), _message(data))

    async def version(self) -> dict[str, Any]:
        status, data = await self._call(self._version.get_code)
        if status != 200:
            self._raise(status, data)
        return dict(data)

    async def get(self, kind: Kind, namespace: str | None, name: str) -> Body | None:
        args = (name,) if kind == "Namespace" else (name, namespace)
        status, data = await self._call(self._method(kind, "read"), *args)
        if status == 404:
            return None
        if status != 200:
            self._raise(status, data)
        return dict(data)

    async def create(self, kind: Kind, namespace: str | None, body: Body) -> Body:
        """POST the object; raises `Conflict` when it exists."""
        args = (strip_nulls(body),) if kind == "Namespace" else (namespace, strip_nulls(body))
        status, data = await self._call(self._method(kind, "create"), *args, field_manager=FIELD_MANAGER)
        if status == 409:
            raise Conflict(f"{kind} exists")
        if status not in (200, 201, 202):
            self._raise(status, data)
        return dict(data)

    async def merge_patch(
        self, kind: Kind, namespace: str | None, name: str, body: Body, *, attempts: int = 5
    ) -> Body:
        where = (name, body) if kind == "Namespace" else (name, namespace, body)
        for attempt in range(attempts):
            status, data = await self._call(
                self._method(kind, "patch"),
                *where,
                _content_type=MERGE_PATCH,
                field_manager=FIELD_MANAGER,
            )
            if status == 200 or status == 201:
                return dict(data)
            if status == 409 and attempt + 1 < attempts:
                await asyncio.sleep(0.1 * (attempt + 1))
                continue
            if status == 404:
                raise Conflict(f"{kind} {name} disappeared")
            self._raise(status, data)
        raise KubeUnavailable(f"{kind} {name}: still conflicting after {attempts} patches")

    async def apply(
        self,
        kind: Kind,
        namespace: str,
        body: Body,
        *,
        exists: bool | None = None,
        guard: Guard | None = None,
    ) -> Body:
        """Create or bring up to date, whatever exists (see the module docstring).

        `exists`: what the caller read (and checked) just before, saves the first GET; a stale
        answer is corrected by the 404/409 the write then gets. `guard`: every object this reads
        is checked before it is patched (it raises to leave the object alone), so with a guard a
        create that meets an object someone made meanwhile reads it instead of patching blind."""
        name = body["metadata"]["name"]
        for attempt in range(5):
            known = exists if attempt == 0 else None
            if known is None:
                current = await self.get(kind, namespace, name)
                if current is not None and guard is not None:
                    guard(current)
                known = current is not None
            if not known:
                try:
                    return await self.create(kind, namespace, body)
                except Conflict:
                    if guard is not None:
                        continue  # read and check it first
            try:
                return await self.merge_patch(kind, namespace, name, body)
            except Conflict:  # deleted between our GET and PATCH: start over
                continue
        raise KubeUnavailable(f"{kind} {name} keeps changing under us")

    async def ensure_namespace(self, body: Body) -> Body | None:
        """Create the namespace; None when this made it, else the namespace as it was found."""
        name = body["metadata"]["name"]
        try:
            await self.create("Namespace", None, body)
            return None
        except Conflict:
            return await self.get("Namespace", None, name)  # None: deleted meanwhile; the next write says so
        except KubeRejected as exc:
            # An agent allowed to write in existing namespaces only (no cluster-wide create).
            found = await self.get("Namespace", None, name) if exc.status == 403 else None
            if found is None:
                raise
            return found

    async def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """Delete the object and, in the background, what it owns (a Job's default is to orphan its
        pods; a Deployment's ReplicaSets go either way). False when it was not there."""
        status, data = await self._call(
            self._method(kind, "delete"), name, namespace, propagation_policy="Background"
        )
        if status == 404:
            return False
        if status not in (200, 202):
            self._raise(status, data)
        return True

    async def list(self, kind: Kind, namespace: str | None, labels: Mapping[str, str]) -> list[Body]:
        """Objects with these labels (also filtered here: not every API emulator implements selectors)."""
        selector = selector_string(labels)
        if namespace is None:
            status, data = await self._call(
                self._method(kind, "list", namespaced=False), label_selector=selector
            )
        else:
            status, data = await self._call(self._method(kind, "list"), namespace, label_selector=selector)
        if status == 404:
            return []
        if status != 200:
            self._raise(status, data)
        return [dict(item) for item in data.get("items") or [] if _matches(item, labels)]

    @contextlib.asynccontextmanager
    async def changes(self, kind: Kind, namespace: str, name: str) -> AsyncIterator[ChangeFeed]:
        feed = ChangeFeed(self._method(kind, "list"), namespace, name, self._watch_slots, self.api)
        task = asyncio.create_task(feed.run(), name=f"kube-watch-{kind}-{namespace}-{name}")
        try:
            yield feed
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _BorrowedClientWatch(watch.Watch):
    """`watch.Watch` on an `ApiClient` it borrows (see the module docstring) and leaves open.

    `Watch.__init__` is skipped on purpose, as it is what builds the client; the attributes it
    would set are set here. The client serves only to deserialise events into model classes,
    which `return_type="object"` never asks for.
    """

    def __init__(self, api: client.ApiClient) -> None:
        self._raw_return_type = "object"
        self._stop = False
        self._api_client = api
        self.resource_version = None
        self.resp = None

    def get_watch_argument_name(self, func: object) -> str:
        # kubernetes_asyncio reads `func`'s docstring (pydoc.getdoc) at every stream to choose
        # between `watch` and `follow` (a log's): 3 % of the agent's CPU under load, one watch per
        # rollout. The agent watches list functions only, which take `watch`.
        return "watch"

    async def close(self) -> None:
        if self.resp is not None:
            self.resp.release()
            self.resp = None


@dataclass
class ChangeFeed:
    """Wakes `wait()` when the watched object changes; `wait()` also returns after `timeout`.

    `latest()` hands over the object as the newest event carried it (once), so the watcher need
    not read it again; None after a deletion or when no event came."""

    list_fn: Callable[..., Awaitable[Any]]
    namespace: str
    name: str
    slots: asyncio.Semaphore
    api: client.ApiClient
    _changed: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _latest: Body | None = field(default=None, init=False)

    def latest(self) -> Body | None:
        found, self._latest = self._latest, None
        return found

    async def run(self) -> None:
        while True:
            try:
                async with self.slots, _BorrowedClientWatch(self.api) as w:
                    async for event in w.stream(
                        self.list_fn,
                        self.namespace,
                        field_selector=f"metadata.name={self.name}",
                        timeout_seconds=300,
                    ):
                        obj = event.get("raw_object") if isinstance(event, dict) else None
                        if isinstance(obj, dict) and (obj.get("metadata") or {}).get("name") == self.name:
                            kind = event.get("type") if isinstance(event, dict) else None
                            self._latest = dict(obj) if kind in ("ADDED", "MODIFIED") else None
                            self._changed.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the timer in `wait` covers for a broken watch
                log.debug("watch broke; re-opening", extra={"object": self.name, "error": repr(exc)})
                await asyncio.sleep(1)

    async def wait(self, timeout: float) -> bool:
        """True if the object changed (or was reported as existing), False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            return False
        finally:
            self._changed.clear()
        return True


def _message(data: Any) -> str:
    if isinstance(data, dict):
        return str(data.get("message") or data.get("reason") or "")[:300]
    return str(data)[:300]

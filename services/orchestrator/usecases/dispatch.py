"""Dispatch: from a `pending` row to a command on the data plane's JetStream subject, as named steps.

The dispatch path is an outbox. A deployment (or an execution) is first stored
as `pending`; then the steps below run, and only once the command is stored on
JetStream (msg id = deployment id, so a repeated publish within the stream's
window is dropped by the server) is the row marked `dispatched`. A crash or an
outage anywhere in between leaves a `pending` row, which the sweeper dispatches
again; the agent is idempotent on (deployment id, seq), so a command that did go
out twice is harmless.

The steps, in order (Flux-style: each one alone can say `Waiting` or `Stalling`):

1. find the data plane (none: `Stalling(no_dataplane)`);
2. resolve the image (pin the tag to a digest: `usecases.resolution`, from the data plane when
   the control plane cannot reach the registry) and seal the pull secret, at once: independent
   RPCs, the first one an HTTP round trip to the registry.
   An error of the earlier step wins, as if they had run one after the other; beside them, the
   deployment's config version is loaded and its secrets sealed to the data plane's key (by the
   credentials service, which alone may read them in Vault);
3. publish the command, with the config (its `env` merged over the component's) and the names of
   the sealed secrets.

`Waiting` leaves the row pending until its next attempt (a backoff while the
registry is unreachable, never past the registry bound), `Stalling` fails it
with a reason a person can act on; anything else is a bug: the row stays
pending with the longest delay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from libs.contracts import reasons
from libs.contracts.config import WorkloadConfig
from libs.contracts.messages import CommandKind, DeployCommand, SealedSecret, SealedValues, utcnow
from libs.oci.reference import parse_reference
from libs.runtime.bus import BusUnavailable
from libs.runtime.errors import DependencyUnavailable, Stalling, Waiting
from services.orchestrator.clients.agents import Agents
from services.orchestrator.clients.credentials import NO_PULL_SECRET, Credentials
from services.orchestrator.clients.gateways import Gateways
from services.orchestrator.domain.commands import command_msg_id, deploy_command
from services.orchestrator.domain.records import Component, DataPlane, Deployment, Execution
from services.orchestrator.domain.rules import NOTE_VENDOR_TAG, retry_delay
from services.orchestrator.store import Store
from services.orchestrator.usecases.executions import move_execution
from services.orchestrator.usecases.resolution import REGISTRY_GONE, Resolution

log = logging.getLogger(__name__)

# An agent's key usually arrives within seconds of its data plane's creation: never wait longer.
NOT_ENROLLED_MAX_DELAY = 30.0


@dataclass
class Job:
    """One command on its way: a deployment's deploy, or (with `execution`) a task's run.
    The steps fill in what they find."""

    deployment: Deployment
    component: Component
    plane: DataPlane | None
    execution: Execution | None = None
    image: str = ""
    pull_secret: SealedSecret | None = None
    config: WorkloadConfig | None = None  # None: the environment was never configured
    config_version: int | None = None
    secrets: SealedValues | None = None
    secret_names: list[str] = field(default_factory=list)
    command: DeployCommand | None = None

    @property
    def kind(self) -> CommandKind:
        return "deploy" if self.execution is None else "run"

    @property
    def key(self) -> str:
        return self.deployment.id if self.execution is None else self.execution.id

    @property
    def attempts(self) -> int:
        return self.deployment.attempts if self.execution is None else self.execution.attempts

    @property
    def target(self) -> DataPlane:
        assert self.plane is not None, "find_dataplane runs first"
        return self.plane


Step = Callable[[Job], Awaitable[None]]


def _ids(kind: CommandKind, key: str) -> dict[str, str]:
    return {"deployment_id": key} if kind == "deploy" else {"execution_id": key}


@dataclass(kw_only=True, eq=False)
class Dispatcher:
    store: Store
    credentials: Credentials
    agents: Agents
    gateways: Gateways
    retry_seconds: float
    max_retry_seconds: float = 60.0
    registry_unreachable_seconds: float = 90.0
    resolution: Resolution = field(init=False)
    _inflight: set[str] = field(init=False, default_factory=set)
    steps: Sequence[Sequence[Step]] = field(init=False)

    def __post_init__(self) -> None:
        self.resolution = Resolution(
            store=self.store,
            credentials=self.credentials,
            agents=self.agents,
            retry_seconds=self.retry_seconds,
            max_retry_seconds=self.max_retry_seconds,
            unreachable_seconds=self.registry_unreachable_seconds,
        )
        self.steps = (
            (self.find_dataplane,),
            (self.resolve_image, self.seal_pull_secret, self.seal_config_secrets),
            (self.publish_command,),
        )

    # --- entry ------------------------------------------------------------------------------

    async def dispatch(self, deployment_id: str) -> None:
        await self._run("deploy", deployment_id)

    async def dispatch_execution(self, execution_id: str) -> None:
        await self._run("run", execution_id)

    async def dispatch_soon(self, deployment_id: str) -> None:
        """Dispatch now if possible; the row is stored, so whatever fails here the sweeper retries."""
        try:
            await self.dispatch(deployment_id)
        except DependencyUnavailable as exc:
            log.warning("dispatch deferred", extra={"deployment_id": deployment_id, "error": str(exc)})

    async def _run(self, kind: CommandKind, key: str) -> None:
        """One dispatch per deployment (or execution) at a time in this process: the intake, the
        API and the sweeper race."""
        if key in self._inflight:
            return
        self._inflight.add(key)
        try:
            job = await self._load(kind, key)
            if job is not None:
                await self._reconcile(job)
        except DependencyUnavailable:
            raise
        except Exception:
            # A bug, not an outage: keep the row pending but do not spin on it.
            log.exception("dispatch failed", extra=_ids(kind, key))
            await self._defer(kind, key, reason=reasons.INTERNAL_ERROR, delay=self.max_retry_seconds)
        finally:
            self._inflight.discard(key)

    async def _load(self, kind: CommandKind, key: str) -> Job | None:
        """The pending work with what its steps need; None when it is not pending (any more)."""
        if kind == "deploy":
            found = await self.store.now.deployments.dispatch_context(key)
            if found is None or found[0].status != "pending":
                return None
            return Job(deployment=found[0], component=found[1], plane=found[2])
        context = await self.store.now.executions.dispatch_context(key)
        if context is None or context[0].status != "pending":
            return None
        execution, deployment, component, plane = context
        return Job(deployment=deployment, component=component, plane=plane, execution=execution)

    async def _reconcile(self, job: Job) -> None:
        try:
            for stage in self.steps:
                await _run_stage(stage, job)
        except Waiting as wait:
            log.info("dispatch deferred", extra={**_ids(job.kind, job.key), "reason": wait.reason})
            await self._defer(job.kind, job.key, reason=wait.reason, delay=wait.delay)
        except Stalling as stall:
            log.info("failed before dispatch", extra={**_ids(job.kind, job.key), "reason": stall.reason})
            await self._fail(job, stall)
        else:
            await self._done(job)

    # --- the steps --------------------------------------------------------------------------

    async def find_dataplane(self, job: Job) -> None:
        if job.plane is None:
            raise Stalling(reasons.NO_DATAPLANE, "the environment has no data plane")

    async def resolve_image(self, job: Job) -> None:
        """The image to run, pinned by digest unless the registry cannot tell (vendor registries):
        `usecases.resolution`. A run takes its deployment's image as it was deployed."""
        if job.execution is not None:
            job.image = job.deployment.pinned_image
            return
        pinned = await self.resolution.pin(job.deployment, job.component, job.target)
        job.image = pinned.image
        if pinned.note is not None and pinned.note not in job.deployment.notes:
            job.deployment = dataclasses.replace(job.deployment, notes=[*job.deployment.notes, pinned.note])

    async def seal_pull_secret(self, job: Job) -> None:
        """The registry's pull secret sealed to the data plane's key; none for anonymous and vendor
        registries (their auth type is cached: it never changes)."""
        component, plane = job.component, job.target
        if plane.public_key is None:
            raise Waiting(reasons.DATAPLANE_NOT_ENROLLED, min(self._backoff(job), NOT_ENROLLED_MAX_DELAY))
        try:
            auth_type = await self.credentials.auth_type(org=component.org, registry_id=component.registry_id)
            if auth_type in NO_PULL_SECRET:
                job.pull_secret = None
                return
            if auth_type is None:
                raise Stalling(reasons.REGISTRY_NOT_FOUND, REGISTRY_GONE)
            reply = await self.credentials.pull_secret(
                org=component.org,
                registry_id=component.registry_id,
                dataplane_id=plane.id,
                public_key=plane.public_key,
            )
        except DependencyUnavailable as exc:
            raise Waiting(reasons.CREDENTIALS_UNAVAILABLE, self.retry_seconds) from exc
        if reply is None:
            raise Stalling(reasons.REGISTRY_NOT_FOUND, REGISTRY_GONE)
        if reply.reason == "not_enrolled":  # the credentials service found no enrolled key to seal to
            raise Waiting(reasons.DATAPLANE_NOT_ENROLLED, min(self._backoff(job), NOT_ENROLLED_MAX_DELAY))
        job.pull_secret = reply.sealed

    async def seal_config_secrets(self, job: Job) -> None:
        """The config version the deployment pinned, and its secrets sealed to the data plane's key
        (none when it has none). A version that is gone (its component was deleted) fails nothing
        here: the deployment goes out as the defaults, and the agent removes it with the teardown."""
        deployment, component = job.deployment, job.component
        if deployment.config_version is None:
            return
        stored = await self.store.now.configs.get(
            component.id, deployment.environment, deployment.config_version
        )
        if stored is None:
            return
        job.config = WorkloadConfig.model_validate(stored.body)
        job.config_version = stored.version
        if not stored.secret_names or stored.secrets_version is None:
            return
        plane = job.target
        if plane.public_key is None:
            raise Waiting(reasons.DATAPLANE_NOT_ENROLLED, min(self._backoff(job), NOT_ENROLLED_MAX_DELAY))
        try:
            reply = await self.credentials.config_secrets(
                org=component.org,
                project=component.project,
                component=component.name,
                environment=deployment.environment,
                version=stored.secrets_version,
                names=list(stored.secret_names),
                dataplane_id=plane.id,
                enrolled_key=plane.public_key,
            )
        except DependencyUnavailable as exc:
            raise Waiting(reasons.CREDENTIALS_UNAVAILABLE, self.retry_seconds) from exc
        if reply.reason == "not_enrolled":
            raise Waiting(reasons.DATAPLANE_NOT_ENROLLED, min(self._backoff(job), NOT_ENROLLED_MAX_DELAY))
        if reply.reason == "not_found":
            raise Stalling(
                reasons.CONFIG_SECRETS_MISSING,
                f"config version {stored.version}: its secrets are not in Vault any more; set them again",
            )
        job.secrets = reply.sealed
        job.secret_names = list(stored.secret_names)

    async def publish_command(self, job: Job) -> None:
        command = deploy_command(
            deployment=job.deployment,
            component=job.component,
            plane=job.target,
            image=job.image,
            pull_secret=job.pull_secret,
            dispatched_at=utcnow(),
            execution=job.execution,
            config=job.config,
            config_version=job.config_version,
            secrets=job.secrets,
            secret_names=job.secret_names,
        )
        try:
            await self.agents.send(command, msg_id=command_msg_id(job.deployment, job.execution))
        except BusUnavailable as exc:
            log.warning("dispatch deferred: bus", extra={**_ids(job.kind, job.key), "error": str(exc)})
            raise Waiting(None, self.retry_seconds) from exc
        job.command = command

    def _backoff(self, job: Job) -> float:
        return retry_delay(job.attempts, base=self.retry_seconds, cap=self.max_retry_seconds)

    # --- outcomes ---------------------------------------------------------------------------

    async def _defer(self, kind: CommandKind, key: str, *, reason: str | None, delay: float) -> None:
        repo = self.store.now.deployments if kind == "deploy" else self.store.now.executions
        await repo.defer(key, reason=reason, delay_seconds=delay)

    async def _fail(self, job: Job, stall: Stalling) -> None:
        if job.execution is not None:
            await move_execution(
                self.store, job.execution.id, status="failed", reason=stall.reason, message=stall.message
            )
            return
        failed = await self.store.now.deployments.fail_pending(
            job.deployment.id, reason=stall.reason, message=stall.message
        )
        if failed is not None:
            await self.gateways.deployment_changed(failed)

    async def _done(self, job: Job) -> None:
        command = job.command
        assert command is not None
        if job.execution is not None:
            await move_execution(self.store, job.execution.id, status="dispatched", reason=None, message=None)
            log.info(
                "execution dispatched", extra={"execution_id": job.key, "dataplane_id": command.dataplane_id}
            )
            return
        deployment = job.deployment
        notes = list(deployment.notes)
        digest = parse_reference(command.image).digest
        if digest is None and NOTE_VENDOR_TAG not in notes:
            notes.append(NOTE_VENDOR_TAG)
        dispatched = await self.store.now.deployments.mark_dispatched(
            deployment.id, digest=digest, notes=notes, dispatched_at=command.dispatched_at
        )
        if dispatched is not None:
            log.info(
                "deployment dispatched",
                extra={
                    "deployment_id": deployment.id,
                    "dataplane_id": command.dataplane_id,
                    "seq": deployment.seq,
                },
            )
            await self.gateways.deployment_changed(dispatched)


async def _run_stage(stage: Sequence[Step], job: Job) -> None:
    """Run a stage's steps at once; the first failing step (in the stage's order) wins."""
    if len(stage) == 1:
        await stage[0](job)
        return
    outcomes = await asyncio.gather(*(step(job) for step in stage), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome

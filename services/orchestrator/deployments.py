"""Deployments and executions: record, dispatch to a data plane, follow what it reports.

The dispatch path is an outbox. A deployment is first stored as `pending`; then
its image is pinned by digest, a pull secret sealed to the data plane's key is
fetched, the `DeployCommand` is stored on JetStream (msg id = deployment id, so a
repeated publish within the stream's window is dropped by the server) and only
then is the row marked `dispatched`. A crash or an outage anywhere in between
leaves a `pending` row, which the sweeper dispatches again; the agent is
idempotent on (deployment id, seq), so a command that did go out twice is harmless.

Every status change is announced on core NATS (`DeploymentChanged`) so gateways
can wake their long polls; the announcement is lossy by design, the database is
the truth and `rpc_deployment_get` reads it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter

from libs.contracts.ids import new_id
from libs.contracts.messages import (
    DeployCommand,
    DeploymentChanged,
    ImagePushed,
    RemoveCommand,
    RolloutReport,
    SealedSecret,
    utcnow,
)
from libs.contracts.naming import namespace_for
from libs.oci.reference import InvalidReference, canonical_host, parse_reference, validate_digest
from libs.runtime.bus import Bus, BusUnavailable
from libs.runtime.errors import DependencyUnavailable, conflict, invalid, not_found
from services.orchestrator.credentials import NO_PULL_SECRET, Credentials
from services.orchestrator.domain import (
    NOTE_VENDOR_TAG,
    Component,
    DataPlane,
    Deployment,
    Environment,
    Execution,
    NewDeployment,
    Teardown,
    execution_status_for,
    manual_image,
    next_environment,
    retry_delay,
)
from services.orchestrator.repository import Repository

log = logging.getLogger(__name__)

# Longer than one dispatch can take (two RPCs and a JetStream publish, 5 s timeouts each).
LEASE_SECONDS = 30.0


class _Retry(Exception):
    """Leave the deployment (or execution) pending; try again after `delay` seconds."""

    def __init__(self, reason: str | None, delay: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class _Fail(Exception):
    """The deployment (or execution) cannot succeed: mark it failed with `reason`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


class Deployer:
    def __init__(
        self,
        *,
        repo: Repository,
        bus: Bus,
        credentials: Credentials,
        retry_seconds: float,
        max_retry_seconds: float = 60.0,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        self.repo = repo
        self.bus = bus
        self.credentials = credentials
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self._inflight: set[str] = set()
        self._changes = Counter(
            "landfall_orchestrator_deployment_status_total",
            "deployment status changes, by new status",
            ["status"],
            registry=metrics if metrics is not None else CollectorRegistry(),
        )

    # --- recording ------------------------------------------------------------------------

    async def _announce(self, deployment: Deployment) -> None:
        self._changes.labels(deployment.status).inc()
        await self.bus.publish(
            self.bus.subjects.deployment_changed(deployment.id),
            DeploymentChanged(deployment=deployment.view()),
        )

    async def _record(self, new: NewDeployment) -> Deployment | None:
        result = await self.repo.insert_deployment(new)
        if result is None:
            return None
        deployment, superseded = result
        for old in superseded:
            log.info("deployment superseded", extra={"deployment_id": old.id, "by": deployment.id})
            await self._announce(old)
        log.info(
            "deployment recorded",
            extra={"deployment_id": deployment.id, "source": new.source, "status": deployment.status},
        )
        await self._announce(deployment)
        return deployment

    async def _record_and_dispatch(self, new: NewDeployment) -> Deployment:
        await self._record(new)
        await self._dispatch_soon(new.id)
        deployment = await self.repo.get_deployment(new.id)
        if deployment is None:  # the component was deleted meanwhile
            raise not_found(f"component {new.component.project}/{new.component.name}")
        return deployment

    async def intake(self, event: ImagePushed) -> bool:
        """Record (once) and dispatch what CI pushed; False when the component does not exist."""
        found = await self.repo.component_and_environments(event.org, event.project, event.component)
        if found is None:
            return False
        component, environments = found
        new = NewDeployment(
            id=event.deployment_id,
            component=component,
            environment=environments[0] if environments else None,
            image=event.image,
            source="webhook",
            accepted_at=event.accepted_at,
            token_prefix=event.token_prefix,
            idempotency_key=event.idempotency_key,
        )
        new = _checked_intake(new, component)
        recorded = await self._record(new)
        if recorded is None:
            existing = await self.repo.get_deployment(event.deployment_id)
            log.info(
                "intake event seen before",
                extra={"deployment_id": event.deployment_id, "status": existing.status if existing else None},
            )
            if existing is None or existing.status != "pending":
                return True
        await self._dispatch_soon(event.deployment_id)
        return True

    async def _environment(
        self, org: str, name: str | None, *, field: str
    ) -> tuple[Environment, list[Environment]]:
        environments = await self.repo.list_environments(org)
        if not environments:
            raise conflict("the org has no environment yet; create one first")
        if name is None:
            return environments[0], environments
        for environment in environments:
            if environment.name == name:
                return environment, environments
        raise invalid(field, f"no environment named {name!r}")

    async def deploy_manual(
        self, component: Component, *, environment: str | None, image: str | None, tag: str | None
    ) -> Deployment:
        """Deploy an image of the component (by default its configured one) to an environment.

        Redeploying an earlier image is the same call with that image (best pinned as
        `host/repository@digest`, from the deployment history); it is recorded as a rollback."""
        reference = manual_image(component, image=image, tag=tag)
        target, _ = await self._environment(component.org, environment, field="environment")
        image_text = str(reference)
        running = await self.repo.last_succeeded(component.id, target.name)
        source = "manual"
        if running is not None and not _same_image(running, image_text, reference.digest):
            earlier = await self.repo.succeeded_before(
                component.id, target.name, image=image_text, digest=reference.digest
            )
            source = "rollback" if earlier else "manual"
        new = NewDeployment(
            id=new_id("dep"),
            component=component,
            environment=target,
            image=image_text,
            digest=reference.digest,
            source=source,
            accepted_at=utcnow(),
        )
        return await self._record_and_dispatch(new)

    async def promote(self, component: Component, *, from_env: str, to_env: str) -> Deployment:
        """Deploy what runs in `from_env` (same digest) to the next environment of the pipeline."""
        source, environments = await self._environment(component.org, from_env, field="from")
        target = next((e for e in environments if e.name == to_env), None)
        if target is None:
            raise invalid("to", f"no environment named {to_env!r}")
        following = next_environment(environments, source.name)
        if following is None or following.name != target.name:
            hint = f"the next one is {following.name!r}" if following else f"{source.name!r} is the last one"
            raise invalid("to", f"promotions go to the next environment in pipeline order; {hint}")
        running = await self.repo.last_succeeded(component.id, source.name)
        if running is None:
            raise conflict(f"nothing runs in {source.name!r} yet: no succeeded deployment to promote")
        new = NewDeployment(
            id=new_id("dep"),
            component=component,
            environment=target,
            image=running.image,
            digest=running.digest,
            source="promotion",
            notes=[f"promoted from {source.name} ({running.id})"],
            accepted_at=utcnow(),
        )
        return await self._record_and_dispatch(new)

    async def start_execution(
        self, component: Component, *, environment: str | None, args: list[str]
    ) -> Execution:
        if component.type != "manual-task":
            raise conflict(f"only a manual-task can be executed; this component is a {component.type}")
        target, _ = await self._environment(component.org, environment, field="environment")
        running = await self.repo.last_succeeded(component.id, target.name)
        if running is None:
            raise conflict(f"the task has no succeeded deployment in {target.name!r}; deploy it first")
        execution = await self.repo.create_execution(id=new_id("exe"), deployment=running, args=args)
        log.info("execution recorded", extra={"execution_id": execution.id, "deployment_id": running.id})
        try:
            await self.dispatch_execution(execution.id)
        except DependencyUnavailable as exc:
            log.warning(
                "execution dispatch deferred", extra={"execution_id": execution.id, "error": str(exc)}
            )
        current = await self.repo.get_execution(execution.id)
        assert current is not None
        return current

    # --- dispatch ---------------------------------------------------------------------------

    async def _guarded(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """One dispatch per deployment at a time in this process (the intake and the sweeper race)."""
        if key in self._inflight:
            return
        self._inflight.add(key)
        try:
            await work()
        finally:
            self._inflight.discard(key)

    async def dispatch(self, deployment_id: str) -> None:
        async def work() -> None:
            try:
                await self._dispatch(deployment_id)
            except DependencyUnavailable:
                raise
            except Exception:
                # A bug, not an outage: keep the row pending but do not spin on it.
                log.exception("dispatch failed", extra={"deployment_id": deployment_id})
                await self.repo.defer(
                    deployment_id, reason="internal_error", delay_seconds=self.max_retry_seconds
                )

        await self._guarded(deployment_id, work)

    async def _dispatch_soon(self, deployment_id: str) -> None:
        """Dispatch now if possible; the row is stored, so whatever fails here the sweeper retries."""
        try:
            await self.dispatch(deployment_id)
        except DependencyUnavailable as exc:
            log.warning("dispatch deferred", extra={"deployment_id": deployment_id, "error": str(exc)})

    async def _dispatch(self, deployment_id: str) -> None:
        context = await self.repo.dispatch_context(deployment_id)
        if context is None or context[0].status != "pending":
            return
        deployment, component, plane = context
        try:
            command = await self._deploy_command(deployment, component, plane)
            await self.bus.publish_durable(
                self.bus.subjects.deploy(command.dataplane_id), command, msg_id=deployment.id
            )
        except _Retry as retry:
            log.info("dispatch deferred", extra={"deployment_id": deployment.id, "reason": retry.reason})
            await self.repo.defer(deployment.id, reason=retry.reason, delay_seconds=retry.delay)
            return
        except _Fail as fail:
            log.info(
                "deployment failed before dispatch",
                extra={"deployment_id": deployment.id, "reason": fail.reason},
            )
            failed = await self.repo.fail_pending(deployment.id, reason=fail.reason, message=fail.message)
            if failed is not None:
                await self._announce(failed)
            return
        except BusUnavailable as exc:
            log.warning("dispatch deferred: bus", extra={"deployment_id": deployment.id, "error": str(exc)})
            await self.repo.defer(deployment.id, reason=None, delay_seconds=self.retry_seconds)
            return
        notes = list(deployment.notes)
        digest = parse_reference(command.image).digest
        if digest is None and NOTE_VENDOR_TAG not in notes:
            notes.append(NOTE_VENDOR_TAG)
        dispatched = await self.repo.mark_dispatched(
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
            await self._announce(dispatched)

    async def _pin(self, deployment: Deployment, component: Component) -> str:
        """The image to run, pinned by digest unless the registry cannot tell (vendor registries)."""
        reference = parse_reference(deployment.image)
        digest = reference.digest or deployment.digest
        if digest is not None:
            return f"{reference.name}@{digest}"
        try:
            resolved = await self.credentials.resolve(
                org=component.org,
                registry_id=component.registry_id,
                repository=reference.repository,
                reference=reference.tag or "latest",
            )
        except DependencyUnavailable as exc:
            raise _Retry("credentials_unavailable", self.retry_seconds) from exc
        if resolved is None:
            raise _Fail("registry_not_found", "the component's registry no longer exists")
        if resolved.status == "resolved":
            try:
                digest = validate_digest(resolved.digest or "")
            except InvalidReference as exc:
                raise _Retry("registry_unreachable", self._backoff(deployment.attempts)) from exc
            await self.repo.set_digest(deployment.id, digest)
            return f"{reference.name}@{digest}"
        if resolved.status == "skipped":
            return str(reference)
        if resolved.status == "not_found":
            raise _Fail("image_not_found", resolved.detail or f"{reference} does not exist in the registry")
        if resolved.status == "unauthorized":
            raise _Fail("registry_unauthorized", resolved.detail or "the registry refused the credentials")
        raise _Retry("registry_unreachable", self._backoff(deployment.attempts))

    def _backoff(self, attempts: int) -> float:
        return retry_delay(attempts, base=self.retry_seconds, cap=self.max_retry_seconds)

    async def _pull_secret(
        self, component: Component, plane: DataPlane, attempts: int
    ) -> SealedSecret | None:
        if plane.public_key is None:
            raise _Retry("dataplane_not_enrolled", min(self._backoff(attempts), 30.0))
        try:
            auth_type = await self.credentials.auth_type(org=component.org, registry_id=component.registry_id)
            if auth_type in NO_PULL_SECRET:
                return None
            if auth_type is None:
                raise _Fail("registry_not_found", "the component's registry no longer exists")
            reply = await self.credentials.pull_secret(
                org=component.org, registry_id=component.registry_id, public_key=plane.public_key
            )
        except DependencyUnavailable as exc:
            raise _Retry("credentials_unavailable", self.retry_seconds) from exc
        if reply is None:
            raise _Fail("registry_not_found", "the component's registry no longer exists")
        return reply.sealed

    async def _deploy_command(
        self, deployment: Deployment, component: Component, plane: DataPlane | None
    ) -> DeployCommand:
        if plane is None:
            raise _Fail("no_dataplane", "the environment has no data plane")
        # Independent RPCs (the first one an HTTP round trip to the registry): both at once.
        # An error of the pin wins, as if they had run one after the other.
        pinned, sealed = await asyncio.gather(
            self._pin(deployment, component),
            self._pull_secret(component, plane, deployment.attempts),
            return_exceptions=True,
        )
        for outcome in (pinned, sealed):
            if isinstance(outcome, BaseException):
                raise outcome
        assert isinstance(pinned, str)
        assert not isinstance(sealed, BaseException)
        image, secret = pinned, sealed
        return DeployCommand(
            kind="deploy",
            deployment_id=deployment.id,
            dataplane_id=plane.id,
            org=component.org,
            project=component.project,
            component=component.name,
            environment=deployment.environment,
            namespace=namespace_for(component.org, component.project, deployment.environment),
            component_type=component.type,
            image=image,
            seq=deployment.seq,
            port=component.port,
            schedule=component.schedule,
            timezone=component.timezone,
            env=component.env,
            ingress_class=plane.ingress_class,
            pull_secret=secret,
            dispatched_at=utcnow(),
        )

    async def dispatch_execution(self, execution_id: str) -> None:
        async def work() -> None:
            try:
                await self._dispatch_execution(execution_id)
            except DependencyUnavailable:
                raise
            except Exception:
                log.exception("execution dispatch failed", extra={"execution_id": execution_id})
                await self.repo.defer_execution(
                    execution_id, reason="internal_error", delay_seconds=self.max_retry_seconds
                )

        await self._guarded(execution_id, work)

    async def _dispatch_execution(self, execution_id: str) -> None:
        context = await self.repo.execution_context(execution_id)
        if context is None or context[0].status != "pending":
            return
        execution, deployment, component, plane = context
        try:
            if plane is None:
                raise _Fail("no_dataplane", "the environment has no data plane")
            secret = await self._pull_secret(component, plane, execution.attempts)
            command = DeployCommand(
                kind="run",
                deployment_id=deployment.id,
                execution_id=execution.id,
                dataplane_id=plane.id,
                org=component.org,
                project=component.project,
                component=component.name,
                environment=deployment.environment,
                namespace=namespace_for(component.org, component.project, deployment.environment),
                component_type=component.type,
                image=deployment.pinned_image,
                seq=deployment.seq,
                env=component.env,
                args=execution.args,
                pull_secret=secret,
                dispatched_at=utcnow(),
            )
            await self.bus.publish_durable(
                self.bus.subjects.deploy(plane.id), command, msg_id=f"{deployment.id}:run:{execution.id}"
            )
        except _Retry as retry:
            await self.repo.defer_execution(execution.id, reason=retry.reason, delay_seconds=retry.delay)
            return
        except _Fail as fail:
            await self.repo.move_execution(
                execution.id, status="failed", reason=fail.reason, message=fail.message
            )
            return
        except BusUnavailable:
            await self.repo.defer_execution(execution.id, reason=None, delay_seconds=self.retry_seconds)
            return
        await self.repo.move_execution(execution.id, status="dispatched", reason=None, message=None)
        log.info("execution dispatched", extra={"execution_id": execution.id, "dataplane_id": plane.id})

    async def sweep(self, *, limit: int = 50, concurrency: int = 8) -> None:
        """Dispatch what is pending and due: after an outage, a crash, or a deferral."""
        gate = asyncio.Semaphore(concurrency)

        async def one(work: Callable[[], Awaitable[None]], what: str) -> None:
            async with gate:
                try:
                    await work()
                except DependencyUnavailable as exc:
                    log.warning("sweep: dependency unavailable", extra={"id": what, "error": str(exc)})
                except Exception:
                    log.exception("sweep: dispatch failed", extra={"id": what})

        deployments = await self.repo.claim_due_deployments(limit, lease_seconds=LEASE_SECONDS)
        executions = await self.repo.claim_due_executions(limit, lease_seconds=LEASE_SECONDS)
        teardowns = await self.repo.claim_due_teardowns(limit, lease_seconds=LEASE_SECONDS)
        await asyncio.gather(
            *(one(functools.partial(self.dispatch, i), i) for i in deployments),
            *(one(functools.partial(self.dispatch_execution, i), i) for i in executions),
            one(functools.partial(self.send_teardowns, teardowns), "teardowns"),
        )

    # --- teardowns of deleted components ----------------------------------------------------

    async def send_teardowns(self, teardowns: list[Teardown]) -> None:
        """Publish each removal to its data plane (JetStream, de-duplicated by teardown id), then
        forget it. What fails stays stored and the sweeper sends it again."""
        for teardown in teardowns:
            command = RemoveCommand(
                teardown_id=teardown.id,
                dataplane_id=teardown.dataplane_id,
                org=teardown.org,
                project=teardown.project,
                component=teardown.component,
                environment=teardown.environment,
                namespace=teardown.namespace,
                seq=teardown.seq,
                sent_at=utcnow(),
            )
            await self.bus.publish_durable(
                self.bus.subjects.deploy(teardown.dataplane_id), command, msg_id=teardown.id
            )
            await self.repo.teardown_sent(teardown.id)
            log.info(
                "removal sent",
                extra={
                    "teardown_id": teardown.id,
                    "dataplane_id": teardown.dataplane_id,
                    "component": f"{teardown.project}/{teardown.component}",
                    "environment": teardown.environment,
                },
            )

    # --- reports from data planes -----------------------------------------------------------

    async def apply_report(self, report: RolloutReport) -> None:
        if report.kind == "run":
            if report.execution_id is None:
                log.warning("run report without execution id", extra={"deployment_id": report.deployment_id})
                return
            status, reason = execution_status_for(report.status)
            moved = await self.repo.move_execution(
                report.execution_id,
                status=status,
                reason=report.reason or reason,
                message=report.message,
                dataplane_id=report.dataplane_id,
                deployment_id=report.deployment_id,
            )
            log.info(
                "run report",
                extra={"execution_id": report.execution_id, "status": status, "applied": moved is not None},
            )
            return
        updated = await self.repo.apply_report(
            report.deployment_id,
            dataplane_id=report.dataplane_id,
            status=report.status,
            reason=report.reason,
            message=report.message,
            applied_at=report.applied_at,
            reported_at=report.reported_at,
        )
        log.info(
            "rollout report",
            extra={
                "deployment_id": report.deployment_id,
                "status": report.status,
                "applied": updated is not None,
            },
        )
        if updated is not None:
            await self._announce(updated)


def _same_image(deployment: Deployment, image: str, digest: str | None) -> bool:
    return deployment.image == image or (digest is not None and deployment.digest == digest)


def _checked_intake(new: NewDeployment, component: Component) -> NewDeployment:
    """The gateway validated the event; still refuse what this component could never run."""
    if new.environment is None:
        return dataclasses.replace(
            new, status="failed", reason="no_environment", message="the org has no environment to deploy to"
        )
    try:
        reference = parse_reference(new.image)
    except InvalidReference as exc:
        return dataclasses.replace(new, status="failed", reason="invalid_image", message=exc.reason)
    if (canonical_host(reference.host), reference.repository) != (
        component.registry_host,
        component.repository,
    ):
        return dataclasses.replace(
            new,
            status="failed",
            reason="image_not_allowed",
            message="not the component's registry or repository",
        )
    return dataclasses.replace(new, image=str(reference), digest=reference.digest)

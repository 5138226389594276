"""The use cases: registries and their secrets, registry checks, answers for the orchestrator.

What is subtle: PostgreSQL and Vault are written without a distributed
transaction, so the order is chosen to leave nothing half-written:

* create: INSERT the row (a duplicate name fails here, before Vault is touched),
  write the secret to Vault (version N), point the row at version N, COMMIT.
  Vault failing rolls the row back (503); the COMMIT failing destroys the path.
* rotate: lock the row, write version N+1, point the row at it, COMMIT. Reads
  always use the version the row names, so when the COMMIT fails the old
  credentials stay in use and N+1 is destroyed (best effort; harmless if not).
* delete: ask the orchestrator whether components use the registry (409 while
  they do; 503 when it cannot tell), then in one transaction delete the row and
  destroy every Vault version before the COMMIT. Vault failing keeps the row.
  A COMMIT failing after that leaves a row without a secret, which a retried
  DELETE finishes.

The audit trail (who, when, what, outcome) is written in the same transaction as
the change it records; failures are recorded afterwards, best effort.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass

from libs.contracts.ids import looks_like, new_id
from libs.contracts.messages import (
    PullSecretReply,
    RegistryInfo,
    RegistryUsage,
    RegistryUsageReply,
    ResolvedImage,
    utcnow,
)
from libs.oci.dockerconfig import build_docker_config_json
from libs.oci.reference import InvalidReference
from libs.oci.vendors import FieldError
from libs.runtime.bus import Bus, BusUnavailable, RpcFailed
from libs.runtime.errors import DependencyUnavailable, ProblemError, conflict, not_found
from services.credentials.models import RegistryCreate, RegistryUpdate
from services.credentials.registry_client import BasicCredentials, CheckResult, RegistryClient
from services.credentials.repository import AuditRow, DuplicateName, RegistryRow, Repository
from services.credentials.rules import (
    RuleViolation,
    ValidatedAuth,
    check_rotation,
    display_name,
    manifest_reference,
    repository_name,
    secret_payload,
    validate_auth,
)
from services.credentials.sealing import seal
from services.credentials.vault import RegistrySecrets, SecretMissing

log = logging.getLogger(__name__)

SECRET_TYPES = frozenset({"basic", "docker-config"})
VENDOR_SKIPPED = "vendor registry: the data plane's cloud identity pulls; tag not pinned"


class OrchestratorUnavailable(DependencyUnavailable):
    """The orchestrator could not say which components use a registry."""


class RegistryBroken(Exception):
    """The registry's stored secret is missing from Vault; new credentials (PATCH) fix it."""


def rule_problem(exc: RuleViolation) -> ProblemError:
    errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return ProblemError(422, "Validation Failed", detail, kind="validation-failed", errors=errors)


@contextlib.contextmanager
def _as_problems(display: str | None = None) -> Iterator[None]:
    try:
        yield
    except RuleViolation as exc:
        raise rule_problem(exc) from None
    except DuplicateName:
        raise conflict(f"a registry named {display!r} already exists in this org") from None


@dataclass
class Registries:
    repo: Repository
    secrets: RegistrySecrets
    client: RegistryClient
    bus: Bus
    rpc_timeout: float = 5.0

    # --- queries --------------------------------------------------------------------------

    async def find(self, org: str, registry_id: str) -> RegistryRow | None:
        if not looks_like("reg", registry_id):
            return None
        return await self.repo.get(org, registry_id)

    async def get(self, org: str, registry_id: str) -> RegistryRow:
        row = await self.find(org, registry_id)
        if row is None:
            raise not_found(f"registry {registry_id[:40]!r}")
        return row

    async def list_registries(self, org: str) -> list[RegistryRow]:
        return await self.repo.list_registries(org)

    async def audit_events(
        self, org: str, *, registry_id: str | None, before: int | None, limit: int
    ) -> list[AuditRow]:
        if registry_id is not None and not looks_like("reg", registry_id):
            raise not_found(f"registry {registry_id[:40]!r}")
        events = await self.repo.audit_events(org, registry_id=registry_id, before=before, limit=limit)
        # A deleted registry keeps its history; an id never seen in this org is unknown.
        if (
            registry_id is not None
            and not events
            and before is None
            and await self.find(org, registry_id) is None
        ):
            raise not_found(f"registry {registry_id!r}")
        return events

    # --- changes --------------------------------------------------------------------------

    async def create(self, org: str, body: RegistryCreate, *, actor: str) -> RegistryRow:
        with _as_problems():
            auth = validate_auth(body.auth)
            name = display_name(body.display_name)
        registry_id = new_id("reg")
        path = self.secrets.path(org, registry_id)
        now = utcnow()
        written: int | None = None
        try:
            with _as_problems(name):
                async with self.repo.transaction() as tx:
                    row = await tx.insert_registry(
                        id=registry_id,
                        org=org,
                        display_name=name,
                        host=auth.host,
                        auth_type=auth.auth_type,
                        username=auth.username,
                        vendor=auth.vendor,
                        warnings=auth.warnings,
                        now=now,
                    )
                    if auth.has_secret:
                        written = await self.secrets.write(path, secret_payload(auth))
                        row = await tx.update(
                            registry_id,
                            display_name=name,
                            username=auth.username,
                            warnings=auth.warnings,
                            secret_version=written,
                            now=now,
                        )
                    await tx.audit(
                        org=org,
                        registry_id=registry_id,
                        action="create",
                        actor=actor,
                        outcome="succeeded",
                        detail=f"{auth.auth_type} auth for {auth.host}",
                    )
        except BaseException as exc:
            if written is not None:
                await self._best_effort("destroy an uncommitted secret", self.secrets.destroy(path))
            await self._record_failure(org, registry_id, "create", actor, exc)
            raise
        log.info(
            "registry created",
            extra={"org": org, "registry_id": registry_id, "auth_type": auth.auth_type, "host": auth.host},
        )
        return row

    async def update(self, org: str, registry_id: str, body: RegistryUpdate, *, actor: str) -> RegistryRow:
        if body.display_name is None and body.auth is None:
            raise rule_problem(
                RuleViolation([FieldError("body", "send display_name and/or auth (new credentials)")])
            )
        with _as_problems():
            new_auth = validate_auth(body.auth) if body.auth is not None else None
            new_name = display_name(body.display_name) if body.display_name is not None else None
        if not looks_like("reg", registry_id):
            raise not_found(f"registry {registry_id[:40]!r}")
        path = self.secrets.path(org, registry_id)
        action = "rotate" if new_auth is not None and new_auth.has_secret else "update"
        written: int | None = None
        try:
            with _as_problems(new_name):
                async with self.repo.transaction() as tx:
                    row = await tx.lock(org, registry_id)
                    if row is None:
                        raise not_found(f"registry {registry_id!r}")
                    username, warnings, version = row.username, row.warnings, row.secret_version
                    if new_auth is not None:
                        check_rotation(current_type=row.auth_type, current_host=row.host, new=new_auth)
                        username, warnings = new_auth.username, list(new_auth.warnings)
                        if new_auth.has_secret:
                            written = await self.secrets.write(path, secret_payload(new_auth))
                            version = written
                    updated = await tx.update(
                        registry_id,
                        display_name=new_name if new_name is not None else row.display_name,
                        username=username,
                        warnings=warnings,
                        secret_version=version,
                        now=utcnow(),
                    )
                    await tx.audit(
                        org=org,
                        registry_id=registry_id,
                        action=action,
                        actor=actor,
                        outcome="succeeded",
                        detail=_update_detail(new_name, new_auth, written),
                    )
        except BaseException as exc:
            if written is not None:
                await self._best_effort(
                    "destroy an uncommitted secret version", self.secrets.destroy_version(path, written)
                )
            await self._record_failure(org, registry_id, action, actor, exc)
            raise
        log.info("registry updated", extra={"org": org, "registry_id": registry_id, "action": action})
        return updated

    async def delete(self, org: str, registry_id: str, *, actor: str) -> None:
        await self.get(org, registry_id)
        components = await self._usage(org, registry_id)
        if components:
            shown = ", ".join(components[:20]) + (" ..." if len(components) > 20 else "")
            await self._best_effort(
                "record a refused delete",
                self.repo.audit(
                    org=org,
                    registry_id=registry_id,
                    action="delete",
                    actor=actor,
                    outcome="refused",
                    detail=f"in use by {shown}",
                ),
            )
            problem = conflict(
                f"the registry is used by {len(components)} component(s): {shown}; "
                "point them at another registry or delete them first"
            )
            problem.extra["components"] = components
            raise problem
        try:
            async with self.repo.transaction() as tx:
                row = await tx.lock(org, registry_id)
                if row is None:
                    raise not_found(f"registry {registry_id!r}")
                await tx.delete(registry_id)
                await tx.audit(
                    org=org, registry_id=registry_id, action="delete", actor=actor, outcome="succeeded"
                )
                if row.auth_type in SECRET_TYPES:
                    await self.secrets.destroy(self.secrets.path(org, registry_id))
        except DependencyUnavailable as exc:
            await self._record_failure(org, registry_id, "delete", actor, exc)
            raise
        log.info("registry deleted", extra={"org": org, "registry_id": registry_id})

    async def test(self, org: str, registry_id: str, repository: str | None, *, actor: str) -> CheckResult:
        row = await self.get(org, registry_id)
        repo_name: str | None = None
        if repository is not None:
            with _as_problems():
                repo_name = repository_name(row.host, repository)
        if row.auth_type == "vendor":
            probe = await self.client.probe(row.host)
            result = (
                CheckResult(
                    True,
                    f"{probe.detail}; pulls use the data plane's {row.vendor} cloud identity, "
                    "which cannot be tested from here",
                )
                if probe.ok
                else probe
            )
        else:
            try:
                credentials = await self.credentials(row)
            except RegistryBroken as exc:
                result = CheckResult(False, str(exc))
            else:
                result = await self.client.check(row.host, credentials, repo_name)
        await self.repo.audit(
            org=org,
            registry_id=registry_id,
            action="test",
            actor=actor,
            outcome="ok" if result.ok else "not_ok",
            detail=result.detail,
        )
        log.info(
            "registry tested",
            extra={"org": org, "registry_id": registry_id, "ok": result.ok, "host": row.host},
        )
        return result

    # --- for the orchestrator (RPC) -------------------------------------------------------

    @staticmethod
    def info(row: RegistryRow) -> RegistryInfo:
        return RegistryInfo(
            id=row.id,
            org=row.org,
            host=row.host,
            auth_type=row.auth_type,
            vendor=row.vendor,
        )

    async def credentials(self, row: RegistryRow) -> BasicCredentials | None:
        """The stored username and password (None for anonymous registries)."""
        if row.auth_type not in SECRET_TYPES:
            return None
        if row.secret_version is None:
            raise RegistryBroken("the registry has no stored credentials; send new ones with PATCH")
        try:
            stored = await self.secrets.read(self.secrets.path(row.org, row.id), row.secret_version)
        except SecretMissing:
            raise RegistryBroken(
                "the stored credentials are missing from Vault; send new ones with PATCH"
            ) from None
        return BasicCredentials(stored.username, stored.password)

    async def resolve(self, row: RegistryRow, repository: str, reference: str) -> ResolvedImage:
        if row.auth_type == "vendor":
            return ResolvedImage(status="skipped", detail=VENDOR_SKIPPED)
        try:
            repo_name = repository_name(row.host, repository)
            ref = manifest_reference(reference)
        except RuleViolation as exc:
            return ResolvedImage(status="not_found", detail=f"invalid repository: {exc.errors[0].message}")
        except InvalidReference as exc:
            return ResolvedImage(status="not_found", detail=f"invalid tag or digest: {exc.reason}")
        try:
            credentials = await self.credentials(row)
        except RegistryBroken as exc:
            return ResolvedImage(status="unauthorized", detail=str(exc))
        return await self.client.resolve(row.host, credentials, repo_name, ref)

    async def pull_secret(self, row: RegistryRow, recipient_public_key: str) -> PullSecretReply:
        """The `.dockerconfigjson` sealed to the data plane's key (raises `BadPublicKey`)."""
        if row.auth_type == "anonymous":
            return PullSecretReply(sealed=None, reason="anonymous")
        if row.auth_type == "vendor":
            return PullSecretReply(sealed=None, reason="vendor")
        credentials = await self.credentials(row)
        assert credentials is not None
        config = build_docker_config_json(row.host, credentials.username, credentials.password)
        sealed = seal(config, recipient_public_key=recipient_public_key, registry_id=row.id)
        return PullSecretReply(sealed=sealed, reason="sealed")

    # --- helpers --------------------------------------------------------------------------

    async def _usage(self, org: str, registry_id: str) -> list[str]:
        try:
            reply = await self.bus.request(
                self.bus.subjects.rpc_registry_usage,
                RegistryUsage(org=org, registry_id=registry_id),
                RegistryUsageReply,
                timeout=self.rpc_timeout,
            )
        except BusUnavailable as exc:
            raise OrchestratorUnavailable(
                "the orchestrator did not answer which components use this registry"
            ) from exc
        except RpcFailed as exc:
            raise OrchestratorUnavailable(
                f"the orchestrator could not tell which components use this registry ({exc.error.code})"
            ) from exc
        return list(reply.components)

    async def _record_failure(
        self, org: str, registry_id: str, action: str, actor: str, exc: BaseException
    ) -> None:
        if not isinstance(exc, DependencyUnavailable):
            return
        await self._best_effort(
            "record a failure",
            self.repo.audit(
                org=org,
                registry_id=registry_id,
                action=action,
                actor=actor,
                outcome="failed",
                detail=f"{type(exc).__name__}: nothing was changed",
            ),
        )

    @staticmethod
    async def _best_effort(what: str, awaitable: Awaitable[object]) -> None:
        try:
            await awaitable
        except Exception as exc:
            log.warning("best-effort step failed", extra={"what": what, "error": type(exc).__name__})


def _update_detail(new_name: str | None, new_auth: ValidatedAuth | None, version: int | None) -> str:
    parts = []
    if new_name is not None:
        parts.append(f"display_name set to {new_name!r}")
    if new_auth is not None:
        parts.append(
            f"new credentials (Vault version {version})" if version is not None else "auth re-validated"
        )
    return "; ".join(parts)

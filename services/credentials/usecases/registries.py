"""Creating, renaming, rotating and deleting registries: PostgreSQL and Vault, nothing half-written.

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

All of this relies on the unit of work committing *inside* `async with
uow.transaction()`, after the block's last line: a failed commit comes out of
the `async with` as an exception, so the Vault version written in the block can
be undone.

Who did it is not this module's business: the HTTP guard writes every change
that succeeded to the shared audit trail (`libs.runtime.access`), and each use
case returns what the audit item's `detail` should say (`Change`), never a
secret.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass

from libs.contracts.ids import looks_like, new_id
from libs.contracts.messages import utcnow
from libs.runtime.errors import Conflict
from libs.runtime.store import Duplicate
from services.credentials.clients.orchestrator import Orchestrator
from services.credentials.domain import (
    SECRET_TYPES,
    Change,
    RegistryAuth,
    RegistryInUse,
    ValidatedAuth,
    check_rotation,
    display_name,
    nothing_to_update,
    validate_auth,
)
from services.credentials.store import RegistrySecrets, Uow
from services.credentials.usecases.catalog import Catalog, unknown

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _unique_name(name: str | None) -> Iterator[None]:
    try:
        yield
    except Duplicate as exc:
        if exc.field != "display_name":
            raise
        raise Conflict(f"a registry named {name!r} already exists in this org") from None


@dataclass
class Registries:
    uow: Uow
    secrets: RegistrySecrets
    catalog: Catalog
    orchestrator: Orchestrator

    async def create(self, org: str, *, name: str, auth: RegistryAuth) -> Change:
        valid = validate_auth(auth)
        name = display_name(name)
        registry_id = new_id("reg")
        now = utcnow()
        written: int | None = None
        try:
            with _unique_name(name):
                async with self.uow.transaction() as tx:
                    registry = await tx.registries.insert(
                        id=registry_id,
                        org=org,
                        display_name=name,
                        auth=valid,
                        now=now,
                    )
                    if valid.has_secret:
                        written = await self.secrets.write(org, registry_id, valid)
                        registry = await tx.registries.update(
                            registry_id,
                            display_name=name,
                            username=valid.username,
                            warnings=valid.warnings,
                            secret_version=written,
                            now=now,
                        )
        except BaseException:
            if written is not None:
                await _best_effort("destroy an uncommitted secret", self.secrets.destroy(org, registry_id))
            raise
        log.info(
            "registry created",
            extra={"org": org, "registry_id": registry_id, "auth_type": valid.auth_type, "host": valid.host},
        )
        return Change(registry, f"{valid.auth_type} auth for {valid.host}")

    async def update(
        self,
        org: str,
        registry_id: str,
        *,
        name: str | None,
        auth: RegistryAuth | None,
    ) -> Change:
        """Rename and/or rotate: new credentials keep the type and the host (a new Vault version)."""
        if name is None and auth is None:
            raise nothing_to_update()
        new_auth = validate_auth(auth) if auth is not None else None
        new_name = display_name(name) if name is not None else None
        if not looks_like("reg", registry_id):
            raise unknown(registry_id)
        written: int | None = None
        try:
            with _unique_name(new_name):
                async with self.uow.transaction() as tx:
                    current = await tx.registries.get(org, registry_id, for_update=True)
                    if current is None:
                        raise unknown(registry_id)
                    username, warnings, version = current.username, current.warnings, current.secret_version
                    if new_auth is not None:
                        check_rotation(
                            current_type=current.auth_type, current_host=current.host, new=new_auth
                        )
                        username, warnings = new_auth.username, list(new_auth.warnings)
                        if new_auth.has_secret:
                            written = await self.secrets.write(org, registry_id, new_auth)
                            version = written
                    updated = await tx.registries.update(
                        registry_id,
                        display_name=new_name if new_name is not None else current.display_name,
                        username=username,
                        warnings=warnings,
                        secret_version=version,
                        now=utcnow(),
                    )
        except BaseException:
            if written is not None:
                await _best_effort(
                    "destroy an uncommitted secret version",
                    self.secrets.destroy_version(org, registry_id, written),
                )
            raise
        rotated = written is not None
        log.info("registry updated", extra={"org": org, "registry_id": registry_id, "rotated": rotated})
        return Change(updated, _update_detail(new_name, new_auth, written))

    async def delete(self, org: str, registry_id: str) -> None:
        """Refused (`RegistryInUse`) while the orchestrator says components use the registry."""
        await self.catalog.get(org, registry_id)
        components = await self.orchestrator.components_using(org, registry_id)
        if components:
            raise RegistryInUse(components)
        async with self.uow.transaction() as tx:
            current = await tx.registries.get(org, registry_id, for_update=True)
            if current is None:
                raise unknown(registry_id)
            await tx.registries.delete(registry_id)
            if current.auth_type in SECRET_TYPES:
                await self.secrets.destroy(org, registry_id)
        log.info("registry deleted", extra={"org": org, "registry_id": registry_id})


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

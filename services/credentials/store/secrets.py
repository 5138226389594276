"""Registry secrets (and, read-only, per-environment config secrets) in Vault KV v2, on the shared
`libs.runtime.vault.KvStore`.

A registry with a secret (`basic`, `docker-config`) has one path,
`<mount>/<prefix>/orgs/<org>/registries/<id>`, holding `{username, password, host}`.

What is subtle: callers read a *pinned version* (the one the database row
names), never "the latest", so a version written by a request whose database
commit then failed is never used (see `usecases.registries`). A pinned version
that is gone, or no longer holds the three strings, is `SecretMissing`.
"""

from __future__ import annotations

from libs.runtime.vault import KvStore
from services.credentials.domain import Credentials, ValidatedAuth

_FIELDS = ("username", "password", "host")


class SecretMissing(Exception):
    """The version the database names is not in Vault (destroyed or deleted by hand)."""


class RegistrySecrets:
    def __init__(self, kv: KvStore) -> None:
        self.kv = kv

    def path(self, org: str, registry_id: str) -> str:
        return self.kv.path("orgs", org, "registries", registry_id)

    async def write(self, org: str, registry_id: str, auth: ValidatedAuth) -> int:
        """A new version holding `auth`'s credentials; returns its number."""
        assert auth.password is not None
        data = {"username": auth.username or "", "password": auth.password, "host": auth.host}
        return await self.kv.write(self.path(org, registry_id), data, what="write a registry secret")

    async def read(self, org: str, registry_id: str, version: int) -> Credentials:
        data = await self.kv.read(self.path(org, registry_id), version=version, what="read a registry secret")
        if data is None or not all(isinstance(data.get(k), str) for k in _FIELDS):
            raise SecretMissing(f"version {version} of the registry secret is not in Vault")
        return Credentials(username=data["username"], password=data["password"])

    async def destroy_version(self, org: str, registry_id: str, version: int) -> None:
        """Destroy one version (undo a write whose database commit failed)."""
        await self.kv.destroy_version(
            self.path(org, registry_id), version, what="destroy a registry secret version"
        )

    async def destroy(self, org: str, registry_id: str) -> None:
        """Every version and the metadata; a registry without a secret is fine."""
        await self.kv.destroy(self.path(org, registry_id), what="destroy a registry secret")


class ConfigSecretStore:
    """Per-environment config secrets, read-only: the orchestrator writes them (write-only token) at
    `<mount>/<prefix>/config/<org>/<project>/<component>/<environment>`; this service reads the
    version a config names, to seal it to a data plane."""

    def __init__(self, kv: KvStore) -> None:
        self.kv = kv

    async def read(
        self, org: str, project: str, component: str, environment: str, version: int
    ) -> dict[str, str] | None:
        """`{name: value}` at `version`; None when that version is gone (or holds something else)."""
        data = await self.kv.read(
            self.kv.path("config", org, project, component, environment),
            version=version,
            what="read config secrets",
        )
        if data is None or not all(isinstance(v, str) for v in data.values()):
            return None
        return dict(data)

"""Resource kinds (from kmock's bundled discovery data) and what the apiserver adds to objects.

A few apiserver defaults are applied (Deployment replicas 1, progress deadline 600 s,
strategy; Job backoffLimit/completions/parallelism; CronJob policies; Service
type/protocol/targetPort), so a "desired vs live" diff in the agent meets the same extra
fields it would meet on a real cluster. Names are checked with the apiserver's limits
(DNS labels for namespaces and services, 52 characters for CronJobs, 63 for Jobs).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

import kmock

from libs.devstack.sandbox.errors import ApiError
from libs.devstack.sandbox.values import JsonDict, json_array

_DNS_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: frozenset[str]
    ref: kmock.resource = dataclasses.field(compare=False, hash=False, repr=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def is_(self, group: str, plural: str) -> bool:
        return self.group == group and self.plural == plural

    def details(self, name: str) -> JsonDict:
        return {"name": name, "group": self.group, "kind": self.plural}

    def not_found(self, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{self.qualified} "{name}" not found', self.details(name))

    def already_exists(self, name: str) -> ApiError:
        return ApiError(409, "AlreadyExists", f'{self.qualified} "{name}" already exists', self.details(name))

    def conflict(self, name: str, why: str) -> ApiError:
        message = f'Operation cannot be fulfilled on {self.qualified} "{name}": {why}'
        return ApiError(409, "Conflict", message, self.details(name))

    def invalid(self, name: str, why: str) -> ApiError:
        message = f'{self.kind} "{name}" is invalid: {why}'
        return ApiError(422, "Invalid", message, self.details(name))


def apply_defaults(kind: Kind, obj: JsonDict) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if kind.is_("apps", "deployments"):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault(
            "strategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        )
    elif kind.is_("batch", "jobs"):
        if "completions" not in spec and "parallelism" not in spec:
            spec["completions"] = 1
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
    elif kind.is_("batch", "cronjobs"):
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
    elif kind.is_("", "services"):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in json_array(spec.get("ports")):
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])


def initial_status(kind: Kind) -> JsonDict:
    if kind.is_("", "pods"):
        return {"phase": "Pending"}
    if kind.is_("", "namespaces"):
        return {"phase": "Active"}
    return {}


def validate_name(kind: Kind, name: str) -> None:
    label_only = kind.is_("", "namespaces") or kind.is_("", "services")
    limit = 52 if kind.is_("batch", "cronjobs") else 63 if label_only or kind.is_("batch", "jobs") else 253
    pattern = _DNS_LABEL if label_only else _DNS_SUBDOMAIN
    if len(name) > limit or not pattern.match(name):
        why = (
            f"metadata.name: Invalid value: {name!r}: must be no more than {limit} characters,"
            " consist of lower case alphanumeric characters, '-' or '.',"
            " and start and end with an alphanumeric character"
        )
        raise kind.invalid(name, why)

"""Per-environment configuration of a component: what an environment says about how it runs.

One model for both sides of the bus: the orchestrator validates a `PUT …/config` body into it
(a 422 names the field pydantic names), stores it as a version, and sends it inside every
`DeployCommand`; the agent validates it again on the way in (a forged or older command cannot
smuggle an invalid quantity into an object). It never holds a secret's value: secrets travel only
sealed (`messages.SealedValues`), and here only their names.

What is subtle:

* Quantities follow Kubernetes' own grammar (`resource.Quantity`: a decimal number and one
  suffix, a binary SI `Ki`…`Ei`, a decimal SI `m`, `k`, `M`…`E`, or an exponent), checked here so
  that the API server never refuses an object for it: a refusal there would fail a deploy late.
* `env` and `secrets` names are C identifiers: valid both as environment variable names and as
  Secret keys, so a Secret can reach the container through `envFrom` unchanged.
* `replicas`, `autoscaling`, `probes` and `ingress` only mean something for long-running workloads
  (and `ingress` for web applications): `unsupported_for(component_type)` names the fields a
  component of another type may not set; the orchestrator answers 422 for them.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

QUANTITY_PATTERN: Final = (
    r"^(\d{1,15}(\.\d{0,9})?|\.\d{1,9})(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d{1,3})?$"
)
ENV_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
HTTP_PATH_PATTERN: Final = r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,255}$"
MAX_ENV: Final = 100
MAX_VALUE_LENGTH: Final = 32 * 1024
MAX_REPLICAS: Final = 100

Quantity = Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN, max_length=32)]
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)]
EnvValue = Annotated[str, StringConstraints(max_length=MAX_VALUE_LENGTH)]
DnsSubdomain = Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]
HttpPath = Annotated[str, StringConstraints(pattern=HTTP_PATH_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]

LONG_RUNNING: Final = frozenset({"service", "web-application"})
WORKLOAD_ONLY: Final = ("replicas", "autoscaling", "probes")
WEB_ONLY: Final = ("ingress",)


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Amounts(_Part):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(_Part):
    requests: Amounts | None = None
    limits: Amounts | None = None


class Probe(_Part):
    path: HttpPath
    port: Port | None = Field(default=None, description="default: the component's port")
    period_seconds: int | None = Field(default=None, ge=1, le=3600)


class Probes(_Part):
    readiness: Probe | None = None
    liveness: Probe | None = None


class Autoscaling(_Part):
    min_replicas: int = Field(ge=1, le=MAX_REPLICAS)
    max_replicas: int = Field(ge=1, le=MAX_REPLICAS)
    target_cpu_percent: int = Field(ge=1, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be at least min_replicas")
        return self


class Ingress(_Part):
    host: DnsSubdomain
    path: HttpPath = "/"
    tls_secret: DnsSubdomain | None = Field(
        default=None, description="a kubernetes.io/tls Secret in the environment's namespace"
    )


class WorkloadConfig(_Part):
    """An environment's configuration of one component, secrets' values excluded."""

    replicas: int | None = Field(default=None, ge=0, le=MAX_REPLICAS)
    resources: Resources | None = None
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=MAX_ENV)
    autoscaling: Autoscaling | None = None
    probes: Probes | None = None
    ingress: Ingress | None = None
    auto_rollback: bool = False

    def unsupported_for(self, component_type: str) -> list[str]:
        """The fields set here that a component of `component_type` may not have."""
        refused = [] if component_type in LONG_RUNNING else [f for f in WORKLOAD_ONLY if getattr(self, f)]
        if component_type != "web-application":
            refused += [f for f in WEB_ONLY if getattr(self, f)]
        return refused


def secret_name_ok(name: str) -> bool:
    """A secret's name follows the same rule as an env name (it reaches the container through envFrom)."""
    return re.fullmatch(ENV_NAME_PATTERN, name) is not None

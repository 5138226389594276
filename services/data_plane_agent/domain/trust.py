"""What the agent refuses to take on trust: the place a command names, and objects it did not write.

A command's `namespace` is a field of the message; the agent does not write
where the message says but where the command's org, project and environment
lead (`naming.namespace_for`), and refuses a command whose namespace says
otherwise (or whose data plane is not this one): a forged or buggy command
naming `kube-system` writes nothing. Object names are computed from the
component (`manifests`), so the component must be a DNS label short enough
for every name derived from it.

An object is the agent's only when it carries `app.kubernetes.io/managed-by:
landfall` AND this data plane's `landfall.dev/dataplane` label: anything else
with the same name (a CronJob made by hand, another data plane's object in a
shared cluster) is refused, never patched or deleted. Objects written by an
agent from before the data plane label are refused too; they need the label
added by hand (see the README).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from libs.contracts import naming
from libs.contracts.messages import DeployCommand, RemoveCommand

from . import manifests

_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE: Final = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
# A CronJob is named after its component and may have 52 characters (its Jobs get a suffix); a
# run's Job is `<component>-<8>` within 63; the ConfigMaps and the Secret are DNS subdomains.
MAX_COMPONENT: Final = 52


class NotOwned(Exception):
    """An object of the name the agent would write exists and is not this data plane's."""

    def __init__(self, kind: str, namespace: str, name: str) -> None:
        where = name if kind == "Namespace" else f"{namespace}/{name}"
        super().__init__(
            f"{kind} {where} exists and is not managed by Landfall for this data plane; it is left alone"
        )
        self.kind = kind
        self.name = name


def landfall(obj: Mapping[str, Any]) -> bool:
    """Did a Landfall agent write `obj` (any data plane's)? What a namespace must be to be written into."""
    return _labels(obj).get(naming.MANAGED_BY) == "landfall"


def owned(obj: Mapping[str, Any], dataplane_id: str) -> bool:
    """Did this data plane's agent write `obj`? Both labels, exactly: what may be changed or deleted."""
    return landfall(obj) and _labels(obj).get(naming.LABEL_DATAPLANE) == dataplane_id


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def guard(kind: str, namespace: str, dataplane_id: str) -> manifests.Guard:
    """A check for `Kube.apply`: raise `NotOwned` for an existing object this data plane did not write."""

    def check(current: Mapping[str, Any]) -> None:
        if not owned(current, dataplane_id):
            name = str((current.get("metadata") or {}).get("name", ""))
            raise NotOwned(kind, namespace, name)

    return check


def refusal(cmd: DeployCommand | RemoveCommand, dataplane_id: str) -> str | None:
    """Why this agent must not act on `cmd` at all (nothing is read or written); None: it may."""
    if cmd.dataplane_id != dataplane_id:
        return f"the command is for data plane {cmd.dataplane_id}, not this one ({dataplane_id})"
    for field in ("org", "project", "environment"):
        if not _LABEL_VALUE.match(getattr(cmd, field)) or len(getattr(cmd, field)) > 63:
            return f"the {field} {getattr(cmd, field)!r} is not a valid label value"
    expected = naming.namespace_for(cmd.org, cmd.project, cmd.environment)
    if cmd.namespace != expected:
        return (
            f"the command names namespace {cmd.namespace!r}; {cmd.org}/{cmd.project}/{cmd.environment}"
            f" lives in {expected!r}"
        )
    if not _DNS_LABEL.match(cmd.component) or len(cmd.component) > MAX_COMPONENT:
        return f"the component {cmd.component!r} is not a DNS label of at most {MAX_COMPONENT} characters"
    return None

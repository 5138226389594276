"""What each party may do on the bus, as nats-server enforces it (the `pub`/`sub`/`resp` of a user JWT).

Why
---
Before, every service's NATS user could publish anywhere: a compromised gateway could publish deploy
commands, or ask `rpc.credentials.pull-secret` for any registry's password. Now each service's user
lists exactly the subjects its code uses (read from it: `publish_durable`, `request`, `serve`,
`subscribe`, `pull_forever`, the broadcasts, the audit trail), and nats-server refuses the rest:

* only the orchestrator publishes `dataplanes.*.deploy`, asks `dataplanes.*.resolve` and `rpc.credentials.*`;
* only credentials asks `rpc.orchestrator.dataplane.key` (the enrolled key it seals pull secrets to);
* the gateway publishes image events, its own broadcasts and asks its two RPCs and the key look-up;
* every service publishes `audit.*` (JetStream) and listens to `apikeys.revoked`;
* agents ask `rpc.orchestrator.agent-jwt.renew` (a shared subject: the signature by the enrolled
  key decides, not the subject), which only the orchestrator answers;
* the console only listens to `deployments.*.changed` (its live pages) and publishes nothing: it
  changes things through the public HTTP API with the signed-in person's key, never on the bus.

What is subtle
--------------
* JetStream is request-reply on `$JS.API.…`, so each JetStream call nats-py makes is a subject to
  allow: `STREAM.CREATE`/`INFO` of every stream for everybody (each service runs `ensure_streams`
  at start; a create never changes an existing stream), `STREAM.UPDATE` for the orchestrator only
  (an update could shrink or re-route a stream another service depends on); `CONSUMER.INFO`,
  `CONSUMER.CREATE.<stream>.<durable>.<filter>` (nats-py's subject for a named consumer with a
  filter), `CONSUMER.MSG.NEXT` and `$JS.ACK` of the orchestrator's own durables, and the agents'
  consumers on DATAPLANE, which the orchestrator creates at enrollment.
* Answers: a responder may publish to the reply subject of a request it received, once, within
  two minutes (`resp`, nats-server's `allow_responses`), instead of to `_INBOX.>`; so no service
  can publish into another's inbox except to answer it.
* Replies to our own requests and fetches arrive below `_INBOX.`, which every service may
  subscribe to. That is still shared: a compromised service could listen to replies meant for
  another (a pull secret is sealed, the rest are ids and names). A per-service inbox prefix (as
  agents have, `_INBOX_<dp>.`) would close it; the connection code does not pass one yet.
* A token in a NATS subject is matched whole (`agent-*` is no wildcard), so the agents' consumers
  are allowed as `…DATAPLANE.*` for info and as creates whose filter is a deploy subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from libs.contracts.subjects import (
    ORCHESTRATOR_AUDIT_DURABLE,
    ORCHESTRATOR_INTAKE_DURABLE,
    ORCHESTRATOR_STATUS_DURABLE,
    Subjects,
)

Service = Literal["credentials", "webhook-gateway", "orchestrator", "console"]
SERVICES: tuple[Service, ...] = ("credentials", "webhook-gateway", "orchestrator", "console")
INBOX = "_INBOX.>"


@dataclass(frozen=True)
class Permissions:
    """Subjects a user may publish to and subscribe to. Empty allow lists = no restriction.

    `responses`: may answer requests it received (nats-server's `allow_responses`, one reply each)."""

    pub_allow: tuple[str, ...] = ()
    sub_allow: tuple[str, ...] = ()
    pub_deny: tuple[str, ...] = ()
    sub_deny: tuple[str, ...] = ()
    responses: bool = False

    def claims(self) -> dict[str, Any]:
        def one(allow: tuple[str, ...], deny: tuple[str, ...]) -> dict[str, list[str]]:
            part: dict[str, list[str]] = {}
            if allow:
                part["allow"] = list(allow)
            if deny:
                part["deny"] = list(deny)
            return part

        claims: dict[str, Any] = {
            "pub": one(self.pub_allow, self.pub_deny),
            "sub": one(self.sub_allow, self.sub_deny),
        }
        if self.responses:
            claims["resp"] = {"max": 1, "ttl": 0}  # ttl 0: nats-server's default (2 minutes)
        return claims


FULL_PERMISSIONS = Permissions()


# --------------------------------------------------------------------------------------------------
# An agent
# --------------------------------------------------------------------------------------------------


def agent_inbox_prefix(dataplane_id: str) -> str:
    """The only subjects an agent may subscribe to start with this (nats-py `inbox_prefix`)."""
    return f"_INBOX_{dataplane_id}"


def agent_permissions(subjects: Subjects, dataplane_id: str) -> Permissions:
    """Least privilege for one data plane's agent, as nats-server enforces it."""
    stream = subjects.dataplane_stream.name
    durable = subjects.agent_durable(dataplane_id)
    return Permissions(
        pub_allow=(
            subjects.status(dataplane_id),
            subjects.heartbeat(dataplane_id),
            f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
            subjects.rpc_agent_jwt_renew,  # a new JWT before this one expires (signed by its own key)
        ),
        # Its own resolution subject (in-cluster tag lookups), answered once per request (`resp`).
        sub_allow=(f"{agent_inbox_prefix(dataplane_id)}.>", subjects.resolve(dataplane_id)),
        responses=True,
    )


# --------------------------------------------------------------------------------------------------
# A service
# --------------------------------------------------------------------------------------------------


def _streams(subjects: Subjects, *, update: bool) -> tuple[str, ...]:
    """What `ensure_streams` sends: create (or read the info of) every stream; update if allowed."""
    verbs = ("CREATE", "INFO", "UPDATE") if update else ("CREATE", "INFO")
    return tuple(f"$JS.API.STREAM.{verb}.{spec.name}" for spec in subjects.streams for verb in verbs)


def _durable(stream: str, durable: str, filter_subject: str) -> tuple[str, ...]:
    """What `pull_forever` sends for one durable pull consumer: bind or create it, fetch, ack."""
    return (
        f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
        f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.{filter_subject}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    )


def _credentials_answers(subjects: Subjects) -> tuple[str, ...]:
    """The RPCs the credentials service answers, which only the orchestrator asks."""
    s = subjects
    return (
        s.rpc_registry_get,
        s.rpc_resolve_image,
        s.rpc_pull_secret,
        s.rpc_config_secrets_seal,  # an environment's config secrets, sealed to a data plane
    )


def service_permissions(subjects: Subjects, service: str) -> Permissions:
    """Least privilege for one Landfall service (`credentials`, `webhook-gateway`, `orchestrator`,
    `console`)."""
    s = subjects
    every = (s.audit("*"),)  # each service records its changes (JetStream publish on AUDIT)
    listens = (INBOX, s.apikeys_revoked)  # replies, and every replica forgets a revoked key
    if service == "orchestrator":
        dataplane = s.dataplane_stream.name
        return Permissions(
            pub_allow=(
                *every,
                *_streams(s, update=True),
                *_durable(s.intake_stream.name, ORCHESTRATOR_INTAKE_DURABLE, s.image_pushed),
                *_durable(s.status_stream.name, ORCHESTRATOR_STATUS_DURABLE, s.all_status),
                *_durable(s.audit_stream.name, ORCHESTRATOR_AUDIT_DURABLE, s.all_audit),
                # the agents' consumers, made at enrollment (Bus.ensure_agent_consumer)
                f"$JS.API.CONSUMER.INFO.{dataplane}.*",
                f"$JS.API.CONSUMER.CREATE.{dataplane}.*.{s.deploy('*')}",
                f"$JS.API.CONSUMER.DELETE.{dataplane}.*",  # a deleted data plane's
                s.deploy("*"),
                s.resolve("*"),  # in-cluster tag resolution, when the control plane cannot reach a registry
                s.deployment_changed("*"),
                s.components_changed,
                s.apikeys_revoked,
                *_credentials_answers(s),
            ),
            sub_allow=(
                *listens,
                s.all_heartbeats,
                s.rpc_apikey_lookup,
                s.rpc_component_get,
                s.rpc_deployment_get,
                s.rpc_registry_usage,
                s.rpc_dataplane_key,
                s.rpc_agent_jwt_renew,
            ),
            responses=True,
        )
    if service == "webhook-gateway":
        return Permissions(
            pub_allow=(
                *every,
                *_streams(s, update=False),
                s.image_pushed,
                s.tokens_revoked,
                s.components_changed,  # a signing secret changed: every gateway drops its cache
                s.rpc_component_get,
                s.rpc_deployment_get,
                s.rpc_apikey_lookup,
            ),
            sub_allow=(*listens, s.deployment_changed("*"), s.tokens_revoked, s.components_changed),
        )
    if service == "credentials":
        return Permissions(
            pub_allow=(
                *every,
                *_streams(s, update=False),
                s.rpc_registry_usage,
                s.rpc_apikey_lookup,
                s.rpc_dataplane_key,
            ),
            sub_allow=(*listens, *_credentials_answers(s)),
            responses=True,
        )
    if service == "console":
        # An empty allow list means "anything": deny every publish instead (PING/PONG, which the
        # readiness check's flush uses, is protocol, not a subject).
        return Permissions(pub_deny=(">",), sub_allow=(INBOX, s.deployment_changed("*")))
    raise ValueError(f"no NATS permissions for {service!r}: one of {', '.join(SERVICES)}")

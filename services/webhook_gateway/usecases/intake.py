"""The webhook: from a CI request to an `ImagePushed` on JetStream, exactly once per request.

Two steps, because the signature covers the raw body and must be checked
before the body is parsed: `authorise` (the token's component still exists and
is this token's, and the signature if the component requires one), then
`accept`.

Accepting commits first and publishes after: one transaction does the
Idempotency-Key check, the webhook-id replay check and the insert of the
accepted request; only once that is committed is the `ImagePushed` stored on
JetStream (`Nats-Msg-Id` = deployment id), then the row is marked published.
The other order (publish inside the transaction) deployed the image of a request
answered 503 when PostgreSQL died before the COMMIT, and CI's retry with the
same key became a second deployment. Now a retry with the key finds the
committed row, publishes it again if it was not marked published (JetStream
drops the duplicate, the orchestrator records a deployment id once) and answers
the same 202. A publish that fails removes the row again (best effort), so a 503
leaves nothing behind. A request with neither key nor webhook-id is a single
INSERT. Two concurrent requests with the same key: the second INSERT waits on the
unique index until the first commits, then finds its row and answers with it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import Counter

from libs.contracts.ids import new_id
from libs.contracts.messages import ComponentInfo, utcnow
from libs.runtime.errors import DependencyUnavailable
from services.webhook_gateway.clients.intake_stream import IntakeStream
from services.webhook_gateway.domain.errors import (
    ComponentGone,
    IdempotencyKeyReused,
    Unauthenticated,
    WebhookReplayed,
)
from services.webhook_gateway.domain.images import resolve_image
from services.webhook_gateway.domain.records import AcceptedRow, AcceptOutcome, TokenRow
from services.webhook_gateway.domain.signatures import SignatureError, verify
from services.webhook_gateway.store import Store, StoreUnit
from services.webhook_gateway.usecases.components import ComponentDirectory

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What `accept` answers: the stored request, and whether this call only repeated an earlier,
    published one (an idempotent retry: nothing changed, no second audit item)."""

    row: AcceptedRow
    repeated: bool


@dataclass(frozen=True, slots=True)
class Authorised:
    """A request whose sender may deploy to `info`; `webhook_id` when it was signed."""

    token: TokenRow
    info: ComponentInfo
    webhook_id: str | None


@dataclass(kw_only=True)
class Intake:
    uow: StoreUnit
    stream: IntakeStream
    directory: ComponentDirectory
    webhooks: Counter
    idempotency_ttl: timedelta
    replay_window: timedelta
    signature_tolerance: int

    async def authorise(self, token: TokenRow, *, body: bytes, headers: Mapping[str, str]) -> Authorised:
        info = await self.directory.find(token.binding)
        if info is None or not token.belongs_to(info.component_id):
            raise ComponentGone(token.binding)  # deleted; a component of that name is another one
        signing = await self.directory.signing(token.binding, info)
        webhook_id = None
        if signing.required and signing.key is not None:
            try:
                webhook_id = verify(
                    signing.key, headers, body, now=time.time(), tolerance=self.signature_tolerance
                )
            except SignatureError as exc:
                self.webhooks.labels(f"signature_{exc.failure}").inc()
                log.info(
                    "signature refused",
                    extra={
                        "failure": exc.failure,
                        "token_prefix": token.token_prefix,
                        "component": str(token.binding),
                    },
                )
                raise Unauthenticated(exc.detail, token=token) from None
        return Authorised(token=token, info=info, webhook_id=webhook_id)

    async def accept(
        self,
        request: Authorised,
        *,
        idempotency_key: str | None,
        image: str | None = None,
        tag: str | None = None,
        digest: str | None = None,
    ) -> Accepted:
        """The accepted request (for a retry with its Idempotency-Key, the one it repeats)."""
        token = request.token
        ref = resolve_image(request.info, image=image, tag=tag, digest=digest)
        candidate = AcceptedRow(
            deployment_id=new_id("dep"),
            token_id=token.id,
            binding=token.binding,
            image=str(ref),
            idempotency_key=idempotency_key,
            created_at=utcnow(),
        )
        outcome, stored, repeated = await self._record(
            candidate, request.webhook_id, token_prefix=token.token_prefix
        )
        self.webhooks.labels(outcome).inc()
        if outcome == "key_mismatch":
            raise IdempotencyKeyReused(stored.deployment_id)
        if outcome == "webhook_replayed":
            raise WebhookReplayed()
        log.info(
            "image accepted" if outcome == "created" else "idempotent retry answered",
            extra={
                "deployment_id": stored.deployment_id,
                "component": str(token.binding),
                "image": stored.image,
                "token_prefix": token.token_prefix,
            },
        )
        return Accepted(stored, repeated)

    async def _record(
        self, row: AcceptedRow, webhook_id: str | None, *, token_prefix: str
    ) -> tuple[AcceptOutcome, AcceptedRow, bool]:
        """(outcome, the stored row, whether this call only repeated a published one)."""
        outcome, stored, published = await self._reserve(row, webhook_id)
        if outcome in ("key_mismatch", "webhook_replayed") or published:
            return outcome, stored, published
        try:
            await self.stream.publish(stored, token_prefix=token_prefix)
        except DependencyUnavailable:
            if outcome == "created":
                await self._release(stored, webhook_id)
            raise
        if stored.idempotency_key is not None:  # only a retry with the key reads the mark
            with contextlib.suppress(DependencyUnavailable):  # the event is stored: a 202 either way
                await self.uow.now.accepted.mark_published(stored.deployment_id)
        # Not known published: the first try may have ended before its answer (and its audit
        # item), so this call counts as the change (JetStream drops the repeated message).
        return outcome, stored, False

    async def _reserve(
        self, row: AcceptedRow, webhook_id: str | None
    ) -> tuple[AcceptOutcome, AcceptedRow, bool]:
        """The committed part of accepting: (outcome, the stored row, whether it is known published)."""
        key = row.idempotency_key
        if key is None and webhook_id is None:
            await self.uow.now.accepted.insert(row)  # nothing to check first: no transaction needed
            return "created", row, False
        async with self.uow.transaction() as tx:
            if key is not None:
                found = await self._retried(tx, row, key)
                if found is not None:
                    return found
            if webhook_id is not None and not await tx.webhook_ids.first_use(
                row.binding, webhook_id, replay_window=self.replay_window
            ):
                return "webhook_replayed", row, False
            if not await tx.accepted.insert(row):
                # A concurrent request with the same key committed first (we waited for it).
                assert key is not None
                found = await self._retried(tx, row, key)
                if found is None:  # pragma: no cover - the conflicting row was just committed
                    raise RuntimeError("idempotency conflict without a visible row")
                return found
        return "created", row, False

    async def _retried(
        self, tx: Store, row: AcceptedRow, key: str
    ) -> tuple[AcceptOutcome, AcceptedRow, bool] | None:
        """The request `row` repeats under `key` (the same image) or collides with (another image)."""
        live = await tx.accepted.live_with_key(row.binding, key, ttl=self.idempotency_ttl)
        if live is None:
            return None
        found, published = live
        return ("replayed" if found.image == row.image else "key_mismatch"), found, published

    async def _release(self, row: AcceptedRow, webhook_id: str | None) -> None:
        """Undo a reservation whose publish failed, so that the 503 leaves nothing behind (best effort:
        if PostgreSQL is gone too, a retry with the same Idempotency-Key publishes the row it finds)."""
        with contextlib.suppress(DependencyUnavailable):
            async with self.uow.transaction() as tx:
                await tx.accepted.delete_unpublished(row.deployment_id)
                if webhook_id is not None:
                    await tx.webhook_ids.forget(row.binding, webhook_id)

    async def prune_webhook_ids(self) -> int:
        return await self.uow.now.webhook_ids.prune(replay_window=self.replay_window)

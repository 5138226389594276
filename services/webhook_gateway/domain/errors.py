"""The gateway's refusals as domain errors: what a caller sees, without any HTTP in them.

The shared middleware renders each as an RFC 9457 problem from its class
(status, title, kind) and detail. `Unauthenticated` is the exception to "no
HTTP needed": a 401 must carry `WWW-Authenticate`, which only the entry points
add (they catch it); rendered by the middleware alone it is still a 401.
"""

from __future__ import annotations

from libs.runtime.errors import Conflict, DomainError, Forbidden
from services.webhook_gateway.domain.records import Binding, TokenRow


class Unauthenticated(DomainError):
    """The CI token, or the signature over the request, does not prove who sent it.

    `token` is the token when it is one the gateway issued (revoked, expired, or its request's
    signature is wrong): such a refusal is worth an audit item; garbage and unknown tokens are not.
    """

    status = 401
    title = "Unauthorized"
    kind = "unauthorized"

    def __init__(self, detail: str, *, token: TokenRow | None = None) -> None:
        super().__init__(detail)
        self.token = token


class RateLimited(Exception):
    """The token spent its burst; `wait` is how many seconds until the next request is allowed."""

    def __init__(self, wait: float, *, rate: float) -> None:
        super().__init__(f"this CI token sent more than {rate:g} requests per second")
        self.wait = wait
        self.detail = str(self)


class ComponentGone(Forbidden):
    def __init__(self, binding: Binding) -> None:
        super().__init__(
            f"component {binding} no longer exists (a component created again under its name is "
            "another one); its CI tokens cannot deploy: create a token for the current component"
        )


class ImageNotAllowed(Forbidden):
    kind = "image-not-allowed"


class IdempotencyKeyReused(DomainError):
    status = 422
    title = "Idempotency Key Reused"
    kind = "idempotency-key-reused"

    def __init__(self, deployment_id: str) -> None:
        super().__init__(
            f"Idempotency-Key was already used for a different image ({deployment_id}); "
            "use a new key for a new request"
        )

    def errors(self) -> list[dict[str, str]]:
        return [{"field": "Idempotency-Key", "message": "already used with a different request body"}]


class WebhookReplayed(Conflict):
    title = "Replayed Webhook"
    kind = "webhook-replayed"

    def __init__(self) -> None:
        super().__init__("this webhook-id was already used; send each request with a new webhook-id")

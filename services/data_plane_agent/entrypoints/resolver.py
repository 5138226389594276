"""In-cluster tag resolution on core NATS: `ResolveInCluster` in, `ResolvedImage` out.

The subject is this data plane's own (`subjects.resolve(<id>)`, the only one its NATS user may
subscribe to besides its inbox, and answer once per request); the work is
`usecases/resolve.py`. A request for another data plane is answered with the RPC error
`invalid` (naming both data planes), never with a lookup. Nothing here is durable: a
request the agent misses (it is offline) gets no answer, and the orchestrator's deadline
decides what happens next.
"""

from __future__ import annotations

from libs.contracts.messages import ResolvedImage, ResolveInCluster
from libs.runtime.bus import Bus, RpcHandlerError

from ..usecases.resolve import InClusterResolver, WrongDataplane


async def serve_resolution(bus: Bus, resolver: InClusterResolver) -> None:
    """Answer this data plane's resolution requests until the connection closes."""
    dataplane_id = resolver.identity.dataplane_id

    async def handle(request: ResolveInCluster) -> ResolvedImage:
        try:
            return await resolver.resolve(request)
        except WrongDataplane as exc:
            raise RpcHandlerError("invalid", str(exc)) from None

    await bus.serve(
        bus.subjects.resolve(dataplane_id), ResolveInCluster, handle, queue=f"agent-resolve-{dataplane_id}"
    )

"""Ready-to-paste CI snippets for one component (the text itself is `webhook_gateway/snippets.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from services.webhook_gateway.domain.images import component_reference
from services.webhook_gateway.domain.records import Binding
from services.webhook_gateway.snippets import render_all
from services.webhook_gateway.usecases.components import ComponentDirectory


@dataclass(kw_only=True)
class Snippets:
    directory: ComponentDirectory
    public_url: str | None

    async def render(self, binding: Binding, *, origin: str) -> tuple[str, str, dict[str, str]]:
        """(gateway URL, example image, the snippets by name); `origin` serves when no public URL is set."""
        info = await self.directory.existing(binding)
        gateway_url = (self.public_url or origin).rstrip("/")
        repository = component_reference(info).name
        return gateway_url, f"{repository}:1.0.0", render_all(gateway_url=gateway_url, repository=repository)

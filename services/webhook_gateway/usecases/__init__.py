"""The gateway's use cases, one module each; `Gateway` holds them as `app.create_app` built them.

Reading order: `authentication` (who may call the CI endpoints), `intake` (the
webhook), `status` (the long-poll), then the management side: `tokens`, `signing`,
`snippets`; `components` is the cached view of the orchestrator's components
they share. Use cases raise domain errors (`libs.runtime.errors`,
`domain/errors.py`) and know no HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.runtime.broadcasts import Broadcasts
from libs.runtime.bus import Bus
from services.webhook_gateway.usecases.authentication import CiAccess, TokenAuthenticator
from services.webhook_gateway.usecases.components import ComponentDirectory
from services.webhook_gateway.usecases.intake import Intake
from services.webhook_gateway.usecases.signing import SigningAdmin
from services.webhook_gateway.usecases.snippets import Snippets
from services.webhook_gateway.usecases.status import DeploymentStatus
from services.webhook_gateway.usecases.tokens import TokenAdmin


@dataclass(frozen=True, slots=True)
class Gateway:
    bus: Bus
    broadcasts: Broadcasts
    auth: TokenAuthenticator
    access: CiAccess
    directory: ComponentDirectory
    intake: Intake
    status: DeploymentStatus
    tokens: TokenAdmin
    signing: SigningAdmin
    snippets: Snippets

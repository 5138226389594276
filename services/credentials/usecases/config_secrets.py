"""Seal one environment's config secrets to a data plane: what the orchestrator asks at dispatch.

The orchestrator wrote the values to Vault (write-only) and knows only their names and the KV
version; this service alone may read them (`store.secrets.ConfigSecretStore`, read-only policy).
What is subtle, as for pull secrets (`usecases.pulls`):

* The values are sealed to the key the orchestrator *enrolled* for the plane the request names,
  asked for each time; a key in a request would not be trusted. No enrolled key is `not_enrolled`
  (the orchestrator waits, as for a plane not enrolled yet).
* The version is pinned: a deployment (a rollback, a redeploy) seals exactly the values its config
  version names, whatever was written since. A version that is gone is `not_found`.
* Only the names the request lists (those the config version records) are sealed, when it lists
  any: a version may hold a value that no config row names (its request failed after the write).
* The plaintext is the JSON object `{name: value}`, and it exists only in this process's memory
  between the Vault read and the seal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from libs.contracts.messages import ConfigSecretsReply, ConfigSecretsSeal, SealedValues
from services.credentials.clients.orchestrator import Orchestrator
from services.credentials.domain import seal
from services.credentials.store.secrets import ConfigSecretStore


@dataclass
class ConfigSecrets:
    secrets: ConfigSecretStore
    orchestrator: Orchestrator

    async def seal(self, req: ConfigSecretsSeal) -> ConfigSecretsReply:
        """Raises `BadPublicKey` (an enrolled key that is unusable), `OrchestratorUnavailable`,
        `VaultUnavailable`."""
        recipient = await self.orchestrator.dataplane_key(req.org, req.dataplane_id)
        if recipient is None:
            return ConfigSecretsReply(reason="not_enrolled")
        values = await self.secrets.read(req.org, req.project, req.component, req.environment, req.version)
        if values is None:
            return ConfigSecretsReply(reason="not_found")
        if req.names:  # only what the config version records (a failed request's extra is not)
            values = {name: values[name] for name in req.names if name in values}
        if not values:
            return ConfigSecretsReply(reason="empty")
        sealed = seal(json.dumps(values, sort_keys=True), recipient_public_key=recipient, registry_id="")
        return ConfigSecretsReply(
            sealed=SealedValues(recipient_key_id=sealed.recipient_key_id, ciphertext=sealed.ciphertext),
            names=sorted(values),
            reason="sealed",
        )

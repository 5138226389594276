"""Why a deployment or execution is where it is: the `reason` strings CI and people see.

Named once here (Flux keeps its condition reasons in `api/v1`), used by the
orchestrator, the agent and the gateway. The values are part of the public
contract (deployment answers, the CLI's exit messages, CI logs): add reasons,
never change one. Reasons the agent copies from Kubernetes (a container's
waiting reason such as `ImagePullBackOff`, a Job's failure reason) are passed
through as Kubernetes spells them and are not listed here.
"""

from __future__ import annotations

from typing import Final

# --- still pending: Landfall retries by itself -------------------------------------------------
CREDENTIALS_UNAVAILABLE: Final = "credentials_unavailable"  # the credentials service did not answer
REGISTRY_UNREACHABLE: Final = "registry_unreachable"  # the registry did not answer the digest lookup
DATAPLANE_NOT_ENROLLED: Final = "dataplane_not_enrolled"  # the data plane has no agent key yet
INTERNAL_ERROR: Final = "internal_error"  # a bug; retried with the longest backoff

# --- failed: a person must act -------------------------------------------------------------------
# (REGISTRY_UNREACHABLE too, once neither the control plane nor the data plane's agent resolved the
# tag within the orchestrator's bound: LANDFALL_REGISTRY_UNREACHABLE_SECONDS, 90 s)
IMAGE_NOT_FOUND: Final = "image_not_found"  # the tag or digest does not exist in the registry
REGISTRY_UNAUTHORIZED: Final = "registry_unauthorized"  # the registry refused the stored credentials
REGISTRY_NOT_FOUND: Final = "registry_not_found"  # the component's registry was deleted
NO_ENVIRONMENT: Final = "no_environment"  # the org has no environment to deploy to
NO_DATAPLANE: Final = "no_dataplane"  # the environment's data plane no longer exists
INVALID_IMAGE: Final = "invalid_image"  # the reference does not parse
IMAGE_NOT_ALLOWED: Final = "image_not_allowed"  # another host or repository than the component's
SUPERSEDED: Final = "superseded"  # a newer deployment of the same component and environment won
CONFIG_SECRETS_MISSING: Final = "config_secrets_missing"  # the config's secrets are gone from Vault

# --- reported by the agent -----------------------------------------------------------------------
APPLY_REJECTED: Final = "apply_rejected"  # the API server refused an object for good
AGENT_ERROR: Final = "agent_error"  # a bug in the agent while applying
JOB_NAME_TAKEN: Final = "job_name_taken"  # a Job of that name belongs to another run
DELETED: Final = "deleted"  # the watched object was deleted (or replaced) under the rollout
PROGRESS_DEADLINE_EXCEEDED: Final = "progress_deadline_exceeded"  # Kubernetes gave up on the rollout
PULL_SECRET_WRONG_RECIPIENT: Final = "pull_secret_wrong_recipient"  # sealed to another key than the agent's
PULL_SECRET_UNREADABLE: Final = "pull_secret_unreadable"  # the sealed pull secret does not open
# the environment's config secrets were sealed to another key than the agent's
CONFIG_SECRETS_WRONG_RECIPIENT: Final = "config_secrets_wrong_recipient"
CONFIG_SECRETS_UNREADABLE: Final = "config_secrets_unreadable"  # the sealed config secrets do not open
COMMAND_REJECTED: Final = "command_rejected"  # names a place or object this agent may not touch

# --- refusals the API answers (a problem whose `type` ends with it) --------------------------------
DATAPLANE_IN_USE: Final = "dataplane_in_use"  # a data plane cannot be deleted while an environment uses it

"""HTTP handlers for a component's per-environment config (`…/environments/{environment}/config`).

What is subtle: pydantic names the field of a failure exactly as API.md wants (its `loc` joined by
"."), but says "String should match pattern '^(\\d{1,15}…'" for a bad quantity; `_human` swaps such
messages for ones a person can act on, keyed by the contract's own patterns. A bad dict key (an env
or secret name) comes with pydantic's `[key]` marker, which is dropped: the field is `env.NAME`.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web
from pydantic import ValidationError

from libs.contracts import config as contract
from libs.runtime.access import audit_target, caller
from libs.runtime.errors import ProblemError
from libs.runtime.http import json_response, path_name, read_json
from services.orchestrator.entrypoints import USECASES
from services.orchestrator.entrypoints.components import component_of
from services.orchestrator.schemas import ConfigIn, ConfigOut
from services.orchestrator.usecases.configs import ConfigState

PATTERN_MESSAGES: Final = {
    contract.QUANTITY_PATTERN: "not a Kubernetes quantity such as 250m or 256Mi",
    contract.ENV_NAME_PATTERN: "not a variable name: letters, digits and _, not starting with a digit,"
    " at most 128 characters",
    contract.DNS_SUBDOMAIN_PATTERN: "not a DNS name such as app.example.com (lowercase letters, digits,"
    " '-' and '.')",
    contract.HTTP_PATH_PATTERN: "not an HTTP path: it starts with / and has no spaces",
}


def _human(exc: ValidationError) -> ProblemError:
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(p) for p in err["loc"] if p != "[key]"]
        message = err["msg"]
        if err["type"] == "string_pattern_mismatch":
            message = PATTERN_MESSAGES.get(str((err.get("ctx") or {}).get("pattern")), message)
        elif err["type"] == "string_too_long" and loc[:1] in (["env"], ["secrets"]):
            message = f"longer than {contract.MAX_VALUE_LENGTH} characters"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        errors.append({"field": ".".join(loc) or "body", "message": message})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return ProblemError(422, "Validation Failed", detail, kind="validation-failed", errors=errors)


async def _body(request: web.Request) -> ConfigIn:
    try:
        return await read_json(request, ConfigIn)
    except ProblemError as problem:
        if isinstance(problem.__cause__, ValidationError):
            raise _human(problem.__cause__) from None
        raise


def config_out(state: ConfigState, **extra: Any) -> ConfigOut:
    return ConfigOut.model_validate(
        {**state.config.model_dump(), "version": state.version, "secret_names": state.secret_names, **extra}
    )


async def get_config(request: web.Request) -> web.Response:
    component = await component_of(request)
    state = await request.app[USECASES].configs.get(component, path_name(request, "environment"))
    return json_response(config_out(state))


async def put_config(request: web.Request) -> web.Response:
    component = await component_of(request)
    environment = path_name(request, "environment")
    body = await _body(request)
    actor = caller(request).actor()
    change = await request.app[USECASES].configs.put(
        component,
        environment,
        config=contract.WorkloadConfig.model_validate(
            body.model_dump(exclude={"secrets", "version", "secret_names", "deployment_id"})
        ),
        secrets=body.secrets,
        actor=f"{actor.type}:{actor.id or actor.name or ''}",
    )
    audit_target(request, request.path, detail=change.summary())
    deployment_id = change.deployment.id if change.deployment is not None else None
    return json_response(config_out(change.state, deployment_id=deployment_id))

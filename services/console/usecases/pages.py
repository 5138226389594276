"""What each page shows and what each button does, as calls to the public API.

Every call carries the session's own key, so the API decides what the person may see and do (an
object of another org answers 404, a role too low 403, both passed on as they are). Calls a page
needs are made at once (`together`, a task group), so a page costs about its slowest call, not their sum.
Paths are built only from names the console's own routes matched (DNS-1123 labels, ids) and the
session's org, quoted anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from services.console.clients.landfall import ApiProblem, Landfall
from services.console.domain import Session, Stage, pinned_image, pipeline


def q(part: str) -> str:
    return quote(part, safe="")


async def together(*calls: Awaitable[Any]) -> list[Any]:
    """The calls at once, their answers in order. A task group rather than `asyncio.gather`: when
    the page's request is cancelled (the browser went away), it waits until every call has ended,
    so none outlives the request, and the first failure cancels the others and is raised as itself
    (an `ApiProblem` the page renders), as gather would."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_awaited(call)) for call in calls]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def _awaited(call: Awaitable[Any]) -> Any:
    return await call


@dataclass
class Console:
    api: Landfall

    # --- paths ----------------------------------------------------------------------------------
    @staticmethod
    def org(s: Session) -> str:
        return f"/v1/orgs/{q(s.org)}"

    def component_path(self, s: Session, project: str, component: str) -> str:
        return f"{self.org(s)}/projects/{q(project)}/components/{q(component)}"

    async def get(self, s: Session, path: str, **query: str) -> Any:
        return await self.api.call("GET", path, key=s.key, query=query)

    async def act(self, s: Session, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return await self.api.call(method, path, key=s.key, body=body)

    async def items(self, s: Session, path: str, **query: str) -> list[dict[str, Any]]:
        answer = await self.get(s, path, **query)
        return list(answer.get("items", [])) if isinstance(answer, dict) else []

    # --- reads ------------------------------------------------------------------------------------
    async def registries(self, s: Session) -> list[dict[str, Any]]:
        return await self.items(s, f"{self.org(s)}/registries")

    async def projects(self, s: Session) -> list[str]:
        return [p["name"] for p in await self.items(s, f"{self.org(s)}/projects")]

    async def components(self, s: Session) -> list[dict[str, Any]]:
        """Every component of every project of the org, by project then name."""
        projects = await self.projects(s)
        lists = await together(
            *(self.items(s, f"{self.org(s)}/projects/{q(p)}/components") for p in projects)
        )
        rows = [c for items in lists for c in items]
        return sorted(rows, key=lambda c: (c.get("project", ""), c.get("name", "")))

    async def environments(self, s: Session) -> list[dict[str, Any]]:
        return await self.items(s, f"{self.org(s)}/environments")

    async def dataplanes(self, s: Session) -> list[dict[str, Any]]:
        return await self.items(s, f"{self.org(s)}/dataplanes")

    async def api_keys(self, s: Session) -> list[dict[str, Any]]:
        return await self.items(s, f"{self.org(s)}/api-keys")

    async def audit(self, s: Session, *, action: str, actor_id: str, cursor: str) -> dict[str, Any]:
        answer = await self.get(
            s, f"{self.org(s)}/audit", action=action, actor_id=actor_id, cursor=cursor, limit="50"
        )
        return answer if isinstance(answer, dict) else {"items": []}

    async def component(self, s: Session, project: str, name: str) -> dict[str, Any]:
        """The component page: the component, its pipeline, history and (manual tasks) executions."""
        path = self.component_path(s, project, name)
        component, environments, history = await together(
            self.get(s, path), self.environments(s), self.items(s, path + "/deployments", limit="50")
        )
        executions: list[dict[str, Any]] = []
        if component.get("type") == "manual-task":
            executions = await self.items(s, path + "/executions")
        stages: list[Stage] = pipeline(environments, history)
        for row in history:
            row["pinned"] = pinned_image(row.get("image", ""), row.get("digest"))
        configs = await self.configs(s, project, name, [e["name"] for e in environments])
        return {
            "component": component,
            "stages": stages,
            "history": history,
            "executions": executions,
            "environments": environments,
            "configs": configs,
        }

    async def live(self, s: Session, project: str, name: str) -> dict[str, Any]:
        """What a live update re-renders: the pipeline and the history."""
        path = self.component_path(s, project, name)
        environments, history = await together(
            self.environments(s), self.items(s, path + "/deployments", limit="50")
        )
        for row in history:
            row["pinned"] = pinned_image(row.get("image", ""), row.get("digest"))
        return {"stages": pipeline(environments, history), "history": history}

    async def ci(self, s: Session, project: str, name: str) -> dict[str, Any]:
        path = self.component_path(s, project, name)
        component, tokens, snippets, signing = await together(
            self.get(s, path),
            self.items(s, path + "/tokens"),
            self.get(s, path + "/ci-snippets"),
            self._signing(s, path),
        )
        return {"component": component, "tokens": tokens, "snippets": snippets, "signing": signing}

    async def _signing(self, s: Session, path: str) -> dict[str, Any]:
        try:
            answer = await self.get(s, path + "/signing-secret")
        except ApiProblem as exc:
            if exc.status != 404:
                raise
            return {"required": False}
        return answer if isinstance(answer, dict) else {"required": False}

    # --- per-environment configuration ---------------------------------------------------------------
    def config_path(self, s: Session, project: str, component: str, environment: str) -> str:
        return f"{self.component_path(s, project, component)}/environments/{q(environment)}/config"

    async def configs(self, s: Session, project: str, name: str, environments: list[str]) -> dict[str, Any]:
        """Each environment's config, for the panel of the component page."""
        answers = await together(
            *(self.get(s, self.config_path(s, project, name, env)) for env in environments)
        )
        return dict(zip(environments, answers, strict=True))

    async def config(self, s: Session, project: str, name: str, environment: str) -> dict[str, Any]:
        component, config = await together(
            self.get(s, self.component_path(s, project, name)),
            self.get(s, self.config_path(s, project, name, environment)),
        )
        return {"component": component, "config": config}

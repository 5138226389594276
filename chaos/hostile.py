"""Part 2, hostile input: schemathesis against every service's `/openapi.json`, all operations.

How, per service:
1. `st run`: every phase (examples, coverage, fuzzing, stateful: links are
   inferred from the responses, e.g. the `id` a POST returns feeds the `{id}` of
   the GET/PATCH/DELETE on it), positive and negative data;
2. `st fuzz`: continuous multi-step sequences until the service has answered
   `min_requests` requests (health, readiness, metrics and the document are
   left to step 1 there, except for the agent, which serves nothing else).

What is checked, on every response: `not_a_server_error` (no 5xx), and that the
response matches the document: its status code is one the operation lists, its
content type and headers are the documented ones, its body validates against the
documented schema; and, across requests, that authentication is enforced, that a
deleted object is gone and that a created one can be read. Security comes from
the document (`adminToken` for management operations, `ciToken` for the CI
ones), with the admin token and a real CI token.

Not checked: that every request the schema allows is accepted, and every one it
forbids refused (`positive_data_acceptance`, `negative_data_rejection`): the
documents are deliberately looser than the validation behind them (a registry
host must answer, an environment name must exist), and those are 422s, not
mismatches of a response.

Real values: path parameters are often (not always) drawn from a dictionary of
objects that exist, in an org of its own per service (the fuzzer deletes what it
finds): its project, component, registry, data plane, CI token and deployment,
so it gets past the 404s to the validation and state machines behind them. The
rest is generated.

3. the hostile shapes of `chaos.shapes` (deep nesting, huge integers, broken
   encodings, non-ASCII digits in query strings, CR/LF in headers and values),
   `SHAPE_EXAMPLES` per operation, with the same tenant's real ids and tokens;
   each 5xx they draw is a failure of its own (method, path, what was sent).

The request count and the 5xx count are read from the service's own
`landfall_http_requests_total` metric (before and after), not from the tool.

The floor, not the clock: the `st fuzz` rounds go on until the service has answered
`min_requests`, past the planned `budget_seconds` if need be (a busy machine serves fewer
requests a second), up to a deadline (`DEADLINE_FACTOR` times the budget); the evidence says
which of the two ended it (`stopped`). What fails the part, and why an error of schemathesis'
own (hypothesis' `FlakyStrategyDefinition`) does not unless there are more than a few:
`chaos.hostile_verdict`, fed by the error log `chaos/hostile_hook.py` makes st write.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.client import Admin
from bench.provision import new_org
from chaos import hostile_verdict, shapes
from chaos.hostile_verdict import StError
from libs.devstack.stack import Stack

PROJECT = "app"
COMPONENT = "api"
CI_COMPONENT = "ci"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
# Consistency across requests: auth is really enforced, a deleted object is gone, a created one is
# there. `st run` only: these checks send requests of their own, which `st fuzz` 4.32 does not expect
# ("dictionary changed size during iteration" ends every fuzz round at once).
RUN_CHECKS = (*CHECKS, "ignored_auth", "use_after_free", "ensure_resource_availability")
# Health, metrics and the document itself: covered by `st run`, left out of the long `st fuzz` rounds
# (they have no parameters, and sequences would spend most of their time on them).
INFRA_PATHS = "^/(healthz|readyz|metrics|openapi.json)$"
SERVICES = ("credentials", "orchestrator", "webhook_gateway", "data_plane_agent")
SHAPE_EXAMPLES = 25  # hostile-shape requests per operation, after schemathesis
INFRA_ONLY = ("data_plane_agent",)  # serves nothing but health, readiness, metrics and its document
# Route labels hold braces themselves (`/v1/orgs/{org}`): the label set ends at the last `}`.
_METRIC = re.compile(r"^landfall_http_requests_total\{(?P<labels>.*)\}\s+(?P<value>[0-9.eE+-]+)$")
_STATUS = re.compile(r'status="(\d+)"')
# How long past its budget a service may be fuzzed to reach the request floor (240 s -> 12 min).
DEADLINE_FACTOR = 3.0
HOOK = Path(__file__).resolve().with_name("hostile_hook.py")


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Per service: `fuzz_service` until `min_requests` are answered, `max_examples` per operation and
    round, within `budget_seconds`."""

    min_requests: int
    max_examples: int
    budget_seconds: float


FULL = Plan(min_requests=10_000, max_examples=100, budget_seconds=240)
QUICK = Plan(min_requests=500, max_examples=10, budget_seconds=90)


@dataclass
class Tenant:
    """The objects the fuzzer may aim at, and the tokens it uses."""

    org: str
    admin_token: str = field(repr=False)
    ci_token: str = field(repr=False)
    ids: list[str]
    api_key: str = field(default="", repr=False)  # the org's owner key: every `apiKey` operation


@dataclass
class HostileResult:
    service: str
    requests: int
    statuses: Counter[int]
    failures: list[dict[str, Any]]
    errors: list[str]
    runs: int
    seconds: float
    shape_requests: int = 0  # of `requests`, those the hostile shapes sent
    tool_errors: list[StError] = field(default_factory=list)  # schemathesis'/hypothesis' own, not in `errors`
    stopped: str = ""  # what ended the fuzzing: the floor reached (when), or the deadline
    budget_seconds: float = 0.0
    deadline_seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def ok(self) -> bool:
        tolerated = len(self.tool_errors) <= hostile_verdict.TOOL_ERROR_LIMIT
        return self.server_errors == 0 and not self.failures and not self.errors and tolerated

    def summary(self) -> str:
        return (
            f"{self.service}: {self.requests} requests, {self.server_errors} 5xx, "
            f"{len(self.failures)} failures, {len(self.errors)} errors, "
            f"{len(self.tool_errors)} tool errors; {self.stopped}"
        )

    def evidence(self) -> dict[str, Any]:
        """The service's entry in `latest.json`."""
        return {
            "requests": self.requests,
            "5xx": self.server_errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "failures": self.failures,
            "errors": self.errors,
            "tool_errors": hostile_verdict.tool_summary(self.tool_errors),
            "runs": self.runs,
            "seconds": round(self.seconds, 1),
            "budget_seconds": self.budget_seconds,
            "deadline_seconds": self.deadline_seconds,
            "stopped": self.stopped,
            "ok": self.ok,
        }


async def prepare(stack: Stack, org: str) -> Tenant:
    """An org of its own, with a project, components, a registry, a data plane and a CI token.

    The fuzzer is free to delete what it finds (and does: a DELETE of the component, a revoked
    token), so every service gets a fresh tenant, and the CI token belongs to a component (`ci`)
    that is not in the dictionary the management operations draw from.
    """
    async with aiohttp.ClientSession() as session:
        admin = await new_org(Admin.for_stack(session, stack, platform=True), org)
        await admin.call(
            "orchestrator", "POST", f"/v1/orgs/{org}/projects", {"name": PROJECT}, expect=(201, 409)
        )
        plane = await admin.call("orchestrator", "POST", f"/v1/orgs/{org}/dataplanes", {"name": "fuzz-plane"})
        await admin.call(
            "orchestrator",
            "POST",
            f"/v1/orgs/{org}/environments",
            {"name": "development", "dataplane_id": plane["id"], "order": 0},
        )
        registry = await admin.call(
            "credentials",
            "POST",
            f"/v1/orgs/{org}/registries",
            {"display_name": "fuzz", "auth": {"type": "anonymous", "host": stack.registry.host}},
        )
        for name in (COMPONENT, CI_COMPONENT):
            await admin.call(
                "orchestrator",
                "POST",
                f"/v1/orgs/{org}/projects/{PROJECT}/components",
                {
                    "name": name,
                    "type": "service",
                    "registry_id": registry["id"],
                    "image": f"{stack.registry.host}/fuzz/{name}:1.0",
                    "port": 8080,
                },
            )
        base = f"/v1/orgs/{org}/projects/{PROJECT}/components"
        token = await admin.call("webhook_gateway", "POST", f"{base}/{COMPONENT}/tokens", {"name": "fuzz"})
        ci = await admin.call("webhook_gateway", "POST", f"{base}/{CI_COMPONENT}/tokens", {"name": "fuzz-ci"})
        deployment = await admin.call(
            "orchestrator", "POST", f"{base}/{CI_COMPONENT}/deployments", {"tag": "1.0"}
        )
    return Tenant(
        org=org,
        admin_token=stack.admin_token,
        ci_token=ci["token"],
        ids=[registry["id"], plane["id"], token["id"], deployment["id"]],
        api_key=admin.token,
    )


def config(tenant: Tenant) -> str:
    """schemathesis.toml: security per scheme, and dictionaries of real path values."""

    def values(items: list[str]) -> str:
        return json.dumps(items)

    return "\n".join(
        [
            "[auth.openapi.adminToken]",
            f"bearer = {json.dumps(tenant.admin_token)}",
            "[auth.openapi.apiKey]",
            f"bearer = {json.dumps(tenant.api_key or tenant.admin_token)}",
            "[auth.openapi.ciToken]",
            f"bearer = {json.dumps(tenant.ci_token)}",
            "[dictionaries.org]",
            f"values = {values([tenant.org])}",
            "[dictionaries.project]",
            f"values = {values([PROJECT])}",
            "[dictionaries.component]",
            f"values = {values([COMPONENT])}",
            "[dictionaries.id]",
            f"values = {values(tenant.ids)}",
            "[parameters]",
            '"path.org" = { dictionary = "org", probability = 0.8 }',
            '"path.project" = { dictionary = "project", probability = 0.8 }',
            '"path.component" = { dictionary = "component", probability = 0.8 }',
            '"path.id" = { dictionary = "id", probability = 0.6 }',
            "",
        ]
    )


def served(url: str) -> Counter[int]:
    """The service's own count of answered requests, by status code."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    counts: Counter[int] = Counter()
    for line in text.splitlines():
        match = _METRIC.match(line)
        if match is None:
            continue
        status = _STATUS.search(match["labels"])
        if status is not None:
            counts[int(status[1])] += int(float(match["value"]))
    return counts


def _report(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The report's failures, and its errors as `{"title", "count"}` (`hostile_verdict.split_errors`)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [], [{"title": f"no schemathesis report at {path}: {exc}", "count": 1}]
    failures = [
        {
            "code": f.get("code"),
            "title": f.get("title"),
            "count": f.get("count"),
            "operations": f.get("operations"),
        }
        for f in data.get("failures", [])
    ]
    errors = [
        {"title": str(e.get("title") or e)[:500], "count": e.get("count", 1)} for e in data.get("errors", [])
    ]
    return failures, errors


ST_KILLED = -9  # what `_st` answers for an st that outlived its timeout


def _st(args: list[str], *, cwd: Path, timeout: float, error_log: Path) -> int:
    """Run st with `chaos/hostile_hook.py` loaded, its errors logged (with their types) to `error_log`."""
    st = Path(sys.executable).with_name("st")
    log = cwd / "st-output.txt"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOK), "LANDFALL_ST_ERROR_LOG": str(error_log)}
    with log.open("a") as out:
        out.write(f"\n$ st {' '.join(args)}\n")
        out.flush()
        try:
            proc = subprocess.run(
                [str(st), *args],
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                env=env,
            )
        except subprocess.TimeoutExpired:  # run() killed it: the part reports it, it does not crash
            out.write(f"\n[chaos] st did not finish within {timeout:g} s and was killed\n")
            return ST_KILLED
    return proc.returncode


def fuzz_service(
    url: str,
    service: str,
    tenant: Tenant,
    workdir: Path,
    *,
    min_requests: int,
    max_examples: int,
    budget_seconds: float,
    seed: int = 1,
    deadline_seconds: float | None = None,
) -> HostileResult:
    """Run schemathesis against the service at `url` until it answered `min_requests`.

    `budget_seconds` is the plan; the fuzz rounds go on past it while the floor is not reached,
    up to `deadline_seconds` (default `DEADLINE_FACTOR` times the budget).
    """
    deadline = budget_seconds * DEADLINE_FACTOR if deadline_seconds is None else deadline_seconds
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "schemathesis.toml"
    cfg.write_text(config(tenant))
    common = [
        str(url) + "/openapi.json",
        "--workers",
        "1",
        "--no-color",
        "--continue-on-failure",
        "--suppress-health-check",
        "all",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--report",
        "json",
    ]
    began = time.monotonic()
    before = served(url)
    failures: list[dict[str, Any]] = []
    errors: list[str] = []
    tool_errors: list[StError] = []
    runs = 0
    own = Counter[int]()  # our own scrapes of /metrics are not the fuzzer's requests

    def fuzzed() -> Counter[int]:
        now = served(url) - before - own
        own[200] += 1
        return now

    def answered() -> int:
        return sum(fuzzed().values())

    def one(command: str, extra: list[str], *, timeout: float) -> None:
        nonlocal runs
        runs += 1
        report, error_log = workdir / f"report-{runs}.json", workdir / f"errors-{runs}.jsonl"
        args = ["--config-file", str(cfg), command, *common, "--report-json-path", str(report), *extra]
        code = _st(args, cwd=workdir, timeout=timeout, error_log=error_log)
        found, reported = _report(report)
        errs, tools = hostile_verdict.split_errors(reported, hostile_verdict.read_log(error_log))
        failures.extend(found)
        errors.extend(errs)
        tool_errors.extend(tools)
        if code == ST_KILLED:
            errors.append(f"st {command} hung past {timeout:g} s and was killed; see {workdir}/st-output.txt")
        elif code not in (0, 1) and not errs:
            errors.append(f"st {command} exited with {code}; see {workdir}/st-output.txt")

    one(
        "run",
        [
            "--checks",
            ",".join(RUN_CHECKS),
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(max_examples),
            "--seed",
            str(seed),
        ],
        timeout=deadline + 120,
    )
    round_ = 0
    rate = 100.0  # requests a second, until a fuzz round has measured it
    stopped = ""
    while (missing := min_requests - answered()) > 0:
        left = deadline - (time.monotonic() - began)
        if left < 5:
            errors.append(
                f"only {min_requests - missing} requests within the {deadline:g} s deadline "
                f"(budget {budget_seconds:g} s)"
            )
            stopped = f"deadline {deadline:g} s passed at {min_requests - missing} of {min_requests} requests"
            break
        round_ += 1
        # Aim a little over what is missing at the rate measured so far, bounded by the deadline.
        seconds = max(3.0, min(left, missing / rate * 1.1))
        round_began, answered_before = time.monotonic(), min_requests - missing
        focus = [] if service in INFRA_ONLY else ["--exclude-path-regex", INFRA_PATHS]
        errors_before = len(errors)
        fuzz_seed = str(seed * 1000 + round_)
        one(
            "fuzz",
            ["--checks", ",".join(CHECKS), "--max-time", str(int(seconds) + 1), "--seed", fuzz_seed, *focus],
            timeout=seconds + 120,
        )
        if len(errors) > errors_before and round_ >= 3:
            stopped = f"stopped on st's errors in round {round_}, at {answered()} of {min_requests} requests"
            break  # st keeps failing: say so rather than spin
        if len(tool_errors) > hostile_verdict.TOOL_ERROR_LIMIT:
            stopped = f"stopped on {len(tool_errors)} tool errors, at {answered()} of {min_requests} requests"
            break  # the part fails on them anyway
        done = answered() - answered_before
        if done > 0:
            rate = max(20.0, done / max(time.monotonic() - round_began, 1.0))
    if not stopped:
        took = time.monotonic() - began
        within = "within" if took <= budget_seconds else "past"
        stopped = (
            f"floor of {min_requests} reached in {took:.0f} s ({within} the {budget_seconds:g} s budget)"
        )
    shaped = shapes.ShapeResult()
    if service not in INFRA_ONLY:
        creds = shapes.Credentials(
            admin_token=tenant.admin_token,
            api_key=tenant.api_key,
            ci_token=tenant.ci_token,
            values={"org": [tenant.org], "id": list(tenant.ids)},
        )
        shaped = shapes.fuzz_shapes(url, creds, examples=SHAPE_EXAMPLES, rng_seed=seed)
        failures.extend(
            {"check": "hostile_shape", "code": "server_error", "detail": e} for e in shaped.server_errors
        )
    statuses = fuzzed()
    return HostileResult(
        service=service,
        requests=sum(statuses.values()),
        statuses=statuses,
        failures=failures,
        errors=errors,
        runs=runs,
        seconds=time.monotonic() - began,
        shape_requests=shaped.requests,
        tool_errors=tool_errors,
        stopped=stopped,
        budget_seconds=budget_seconds,
        deadline_seconds=deadline,
    )

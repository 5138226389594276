"""The hostile part's verdict keeps schemathesis' own errors apart from a service's, with made-up st output.

A tool error (hypothesis' `FlakyStrategyDefinition` raised while generating) is reported and does not
fail the part, up to `TOOL_ERROR_LIMIT`; a 5xx, a connection reset, an error st reports that its log
does not explain, more tool errors than the bound, or a missed request floor still fail it. The
last tests feed the real hook (`chaos/hostile_hook.py`, loaded from its path as st loads it) real
schemathesis events.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import hypothesis.errors
import pytest

from chaos import hostile, hostile_verdict, run
from chaos.hostile_verdict import TOOL_ERROR_LIMIT, StError

FLAKY = "hypothesis.errors.FlakyStrategyDefinition"
FLAKY_MESSAGE = "Inconsistent data generation! Data generation behaved differently between different runs."
RESET = "('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))"


def log(path: Path, *records: dict[str, Any], started: bool = True) -> Path:
    lines = ([{"kind": "started"}] if started else []) + [{"kind": "error", **r} for r in records]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def flaky(label: str = "POST /v1/orgs/{org}/registries") -> dict[str, Any]:
    return {
        "title": "Runtime Error",
        "types": [FLAKY],
        "message": FLAKY_MESSAGE,
        "label": label,
        "phase": None,
    }


def reset() -> dict[str, Any]:
    return {
        "title": "Network Error",
        "types": ["requests.exceptions.ConnectionError"],
        "message": RESET,
        "label": "GET /v1/orgs/{org}",
        "phase": "fuzzing",
    }


def result(
    tool_errors: list[StError], *, statuses: Counter[int] | None = None, **kw: Any
) -> hostile.HostileResult:
    fields: dict[str, Any] = {
        "service": "credentials",
        "requests": 10_076,
        "statuses": statuses if statuses is not None else Counter({200: 6000, 404: 2076, 422: 2000}),
        "failures": [],
        "errors": [],
        "runs": 4,
        "seconds": 250.0,
        "tool_errors": tool_errors,
        "stopped": "floor of 10000 reached in 250 s (past the 240 s budget)",
        **kw,
    }
    return hostile.HostileResult(**fields)


def test_a_flaky_strategy_definition_is_a_tool_error_and_the_part_passes(tmp_path: Path) -> None:
    logged = hostile_verdict.read_log(log(tmp_path / "errors.jsonl", flaky()))
    errors, tools = hostile_verdict.split_errors([{"title": "Runtime Error", "count": 1}], logged)
    assert errors == []
    assert [t.types for t in tools] == [(FLAKY,)]

    outcome = result(tools)
    assert outcome.ok
    evidence = outcome.evidence()
    assert evidence["tool_errors"]["count"] == 1
    assert evidence["tool_errors"]["kinds"] == {"FlakyStrategyDefinition": 1}
    assert FLAKY_MESSAGE in evidence["tool_errors"]["first"]
    assert "floor of 10000 reached" in evidence["stopped"]
    results = {"hostile": {"credentials": evidence}}
    assert run.problems(results, run.FULL) == []
    table = run.render(results)
    assert "tool errors 1/5" in table
    assert "FlakyStrategyDefinition" in table
    assert FLAKY_MESSAGE[:30] in table


def test_a_5xx_still_fails_the_part_beside_a_tolerated_tool_error(tmp_path: Path) -> None:
    _, tools = hostile_verdict.split_errors([], hostile_verdict.read_log(log(tmp_path / "e.jsonl", flaky())))
    outcome = result(tools, statuses=Counter({200: 10_075, 500: 1}))
    assert not outcome.ok
    assert outcome.server_errors == 1
    problems = run.problems({"hostile": {"credentials": outcome.evidence()}}, run.FULL)
    assert "5xx = 1" in problems
    assert hostile_verdict.service_problems("credentials", outcome.evidence(), 10_000) == [
        "hostile credentials: 1 5xx"
    ]


def test_more_tool_errors_than_the_bound_fail_the_part(tmp_path: Path) -> None:
    many = [flaky(f"GET /v1/op{i}") for i in range(TOOL_ERROR_LIMIT + 1)]
    errors, tools = hostile_verdict.split_errors(
        [{"title": "Runtime Error", "count": TOOL_ERROR_LIMIT + 1}],
        hostile_verdict.read_log(log(tmp_path / "e.jsonl", *many)),
    )
    assert errors == []
    assert len(tools) == TOOL_ERROR_LIMIT + 1
    outcome = result(tools)
    assert not outcome.ok
    (problem,) = run.problems({"hostile": {"credentials": outcome.evidence()}}, run.FULL)
    assert f"{TOOL_ERROR_LIMIT + 1} tool errors" in problem
    assert "FlakyStrategyDefinition" in problem
    # At the bound it passes.
    assert result(tools[:TOOL_ERROR_LIMIT]).ok


def test_a_connection_reset_by_the_service_is_not_a_tool_error(tmp_path: Path) -> None:
    errors, tools = hostile_verdict.split_errors(
        [{"title": "Network Error", "count": 1}, {"title": "Runtime Error", "count": 1}],
        hostile_verdict.read_log(log(tmp_path / "e.jsonl", reset(), flaky())),
    )
    assert len(tools) == 1
    assert len(errors) == 1
    assert "Connection reset by peer" in errors[0]
    assert "ConnectionError" in errors[0]
    outcome = result(tools, errors=errors)
    assert not outcome.ok
    assert run.problems({"hostile": {"credentials": outcome.evidence()}}, run.FULL) == [
        "hostile credentials: 0 failures, 1 errors"
    ]


def test_tool_errors_do_not_excuse_a_missed_floor(tmp_path: Path) -> None:
    _, tools = hostile_verdict.split_errors([], hostile_verdict.read_log(log(tmp_path / "e.jsonl", flaky())))
    evidence = result(tools, requests=8_295).evidence()
    assert run.problems({"hostile": {"credentials": evidence}}, run.FULL) == [
        "hostile credentials: only 8295 requests"
    ]


def test_without_the_hooks_log_every_error_counts_against_the_service(tmp_path: Path) -> None:
    reported = [{"title": "Runtime Error", "count": 1}]
    assert hostile_verdict.read_log(tmp_path / "missing.jsonl") is None
    not_started = hostile_verdict.read_log(log(tmp_path / "e.jsonl", flaky(), started=False))
    assert not_started is None
    errors, tools = hostile_verdict.split_errors(reported, not_started)
    assert tools == []
    assert errors == ["Runtime Error (x1; no error log from st)"]


def test_an_error_st_reports_but_its_log_does_not_explain_counts(tmp_path: Path) -> None:
    errors, tools = hostile_verdict.split_errors(
        [{"title": "Runtime Error", "count": 2}, {"title": "Test Execution Error", "count": 1}],
        hostile_verdict.read_log(log(tmp_path / "e.jsonl", flaky())),
    )
    assert len(tools) == 1
    assert errors == [
        "Runtime Error (x1): reported by st, not in its error log",
        "Test Execution Error (x1): reported by st, not in its error log",
    ]


@pytest.mark.parametrize(
    ("error", "is_tool"),
    [
        (StError("Runtime Error", (FLAKY,), FLAKY_MESSAGE), True),
        (StError("Runtime Error", ("hypothesis.errors.FlakyReplay",), "replay"), True),
        (StError("Runtime Error", ("builtins.AssertionError",), "", inconsistent_replay=True), True),
        (StError("Runtime Error", (FLAKY, FLAKY), "a group of them"), True),
        # A response that failed once and not on replay is the service's behaviour.
        (StError("Runtime Error", ("hypothesis.errors.FlakyFailure",), "flaky"), False),
        (StError("Runtime Error", (FLAKY, "requests.exceptions.ReadTimeout"), "a group"), False),
        (StError("Runtime Error", ("builtins.AssertionError",), ""), False),
        (StError("Runtime Error", (), "no type"), False),
        (StError("Test Execution Error", (FLAKY,), FLAKY_MESSAGE, fatal=True), False),
        (StError("Unhealthy API", ("schemathesis.engine.errors.UnhealthyAPIError",), ""), False),
    ],
)
def test_what_is_a_tool_error(error: StError, is_tool: bool) -> None:
    assert error.is_tool_error is is_tool


@pytest.fixture
def hook() -> Iterator[ModuleType]:
    """chaos/hostile_hook.py loaded from its path, as `st` loads it; its handler unregistered after."""
    from schemathesis.cli.ext.handlers import CUSTOM_HANDLERS

    before = list(CUSTOM_HANDLERS)
    spec = importlib.util.spec_from_file_location("_landfall_test_hook", hostile.HOOK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        assert module.ErrorLog in CUSTOM_HANDLERS
        yield module
    finally:
        CUSTOM_HANDLERS[:] = before


def test_the_hook_logs_schemathesis_events_with_their_exception_types(
    hook: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests
    from schemathesis.engine import events

    path = tmp_path / "errors.jsonl"
    monkeypatch.setenv(hook.ENV, str(path))
    handler = hook.ErrorLog()
    handler.start(None)
    for error in (
        hypothesis.errors.FlakyStrategyDefinition(FLAKY_MESSAGE),
        requests.exceptions.ConnectionError(RESET),
    ):
        handler.handle_event(
            None, events.NonFatalError(error=error, phase=None, label="GET /x", related_to_operation=True)
        )
    handler.handle_event(None, events.FatalError(exception=RuntimeError("boom")))

    logged = hostile_verdict.read_log(path)
    assert logged is not None
    assert [(e.title, e.types, e.fatal) for e in logged] == [
        ("Runtime Error", (FLAKY,), False),
        ("Network Error", ("requests.exceptions.ConnectionError",), False),
        ("Test Execution Error", ("builtins.RuntimeError",), True),
    ]
    errors, tools = hostile_verdict.split_errors(
        [{"title": "Network Error", "count": 1}, {"title": "Runtime Error", "count": 1}], logged
    )
    assert [t.message for t in tools] == [FLAKY_MESSAGE]
    assert len(errors) == 2
    assert "Connection reset by peer" in errors[0]
    assert "boom" in errors[1]

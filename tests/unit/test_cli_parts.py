"""The CLI's pure parts: settings precedence, the profile file, problem documents, the wait loop."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from libs.cli import config as cfg
from libs.cli.client import ApiError, format_problem, is_ci_token
from libs.cli.commands.deploys import repository_of
from libs.cli.context import parse_pairs
from libs.cli.errors import CliError, exit_code_for_status
from libs.cli.main import hoist_global_options
from libs.cli.transport import ConnectFailed
from libs.cli.wait import Clock, TimedOut, follow


def test_exit_codes_follow_cli_md() -> None:
    expected = {401: 3, 403: 3, 404: 4, 409: 6, 413: 6, 415: 6, 422: 6, 503: 5, 429: 5, 502: 5}
    assert {status: exit_code_for_status(status) for status in expected} == expected


def test_a_problem_reads_as_detail_field_errors_and_what_next() -> None:
    problem = {
        "title": "Validation Failed",
        "status": 422,
        "detail": "auth.host: required",
        "errors": [{"field": "auth.host", "message": "required"}],
    }
    text = format_problem(422, problem, None)
    assert text.splitlines()[0] == "error: Validation Failed (HTTP 422): auth.host: required"
    assert "  - auth.host: required" in text
    assert "next:" in text
    assert "Retry-After: 3 s" in format_problem(503, {"detail": "vault down"}, "3")
    assert "landfall login" in format_problem(401, {}, None)


def test_route_missing_is_told_apart_from_an_unknown_object() -> None:
    assert ApiError(404, {"title": "Not Found", "detail": "404: Not Found"}, None).route_missing
    assert ApiError(405, {"title": "Method Not Allowed"}, None).route_missing
    assert not ApiError(404, {"detail": "component x does not exist"}, None).route_missing


def test_settings_flags_beat_env_beat_profile(tmp_path: Path) -> None:
    path = tmp_path / "landfall" / "config.toml"
    cfg.save_profile(
        path, "work", {"url": "http://profile", "token": "t-profile", "org": "acme"}, make_current=True
    )
    env = {"LANDFALL_URL": "http://env"}
    s = cfg.resolve({}, env, path)
    assert (s.url, s.token, s.org, s.project, s.profile) == (
        "http://env",
        "t-profile",
        "acme",
        "default",
        "work",
    )
    s = cfg.resolve({"url": "http://flag", "project": "p"}, env, path)
    assert (s.url, s.project) == ("http://flag", "p")
    assert cfg.resolve({}, {}, tmp_path / "none.toml").org == "default"
    with pytest.raises(CliError) as err:
        cfg.resolve({"profile": "nope"}, {}, path)
    assert err.value.code == 2
    assert "t-profile" not in err.value.message


def test_the_profile_file_is_private_and_round_trips_odd_values(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "landfall" / "config.toml"
    cfg.save_profile(path, "a b", {"url": 'http://x/"q"\\', "token": "tok\n"}, make_current=False)
    cfg.save_profile(path, "second", {"url": "http://y"}, make_current=False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = cfg.load(path)
    assert data["current"] == "a b"
    assert data["profiles"]["a b"] == {"url": 'http://x/"q"\\', "token": "tok\n"}
    assert cfg.config_path({"XDG_CONFIG_HOME": "/c"}) == Path("/c/landfall/config.toml")
    assert cfg.config_path({"HOME": "/h"}) == Path("/h/.config/landfall/config.toml")


def test_global_options_may_stand_anywhere_before_the_double_dash() -> None:
    assert hoist_global_options(["deploy", "x", "--tag", "1", "-o", "json", "--url=http://u"]) == [
        "--output",
        "json",
        "--url=http://u",
        "deploy",
        "x",
        "--tag",
        "1",
    ]
    assert hoist_global_options(["run", "t", "--", "--token", "x"]) == ["run", "t", "--", "--token", "x"]
    assert hoist_global_options(["--token-stdin", "login"]) == ["--token-stdin", "login"]
    assert hoist_global_options(["status", "d", "-ojson"]) == ["--output=json", "status", "d"]


def test_small_parsers() -> None:
    assert parse_pairs(["A=1", "B=x=y", "C="], "--env") == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(CliError):
        parse_pairs(["novalue"], "--env")
    assert repository_of("127.0.0.1:5000/team/app:1.0") == "127.0.0.1:5000/team/app"
    assert repository_of("127.0.0.1:5000/team/app@sha256:ab") == "127.0.0.1:5000/team/app"
    assert repository_of("ghcr.io/a/b") == "ghcr.io/a/b"
    assert is_ci_token("lfci_abc")
    assert not is_ci_token("lfk_abc")
    assert not is_ci_token(None)


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 0.0
        super().__init__(now=lambda: self.t, sleep=self.advance)

    def advance(self, seconds: float) -> None:
        self.t += seconds


def test_follow_reports_each_change_and_rides_out_outages() -> None:
    clock = FakeClock()
    answers: list[Any] = [
        {"status": "pending"},
        ConnectFailed("refused"),
        ApiError(503, {"detail": "down"}, "1"),
        {"status": "dispatched"},
        {"status": "dispatched"},
        {"status": "succeeded", "digest": "sha256:1"},
    ]
    waits: list[int] = []

    def poll(wait: int) -> dict[str, Any]:
        waits.append(wait)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        clock.advance(0.01)
        return dict(answer)

    seen: list[str] = []
    retries: list[str] = []
    done = follow(
        poll,
        what="d",
        timeout=30,
        on_change=lambda s, _: seen.append(s),
        on_retry=retries.append,
        clock=clock,
    )
    assert seen == ["pending", "dispatched", "succeeded"]
    assert done.state["digest"] == "sha256:1"
    assert done.retries == 2
    assert len(retries) == 2
    assert all(w <= 5 for w in waits)


def test_follow_stops_at_the_deadline_and_does_not_retry_a_refusal() -> None:
    clock = FakeClock()

    def slow(wait: int) -> dict[str, Any]:
        clock.advance(max(wait, 0.5))
        return {"status": "progressing"}

    with pytest.raises(TimedOut) as err:
        follow(slow, what="deployment d", timeout=7, clock=clock)
    assert err.value.code == 5
    assert "progressing" in err.value.message
    assert clock.t <= 7.5

    def refused(wait: int) -> dict[str, Any]:
        raise ApiError(401, {"detail": "bad token"}, None)

    with pytest.raises(ApiError):
        follow(refused, what="d", timeout=5, clock=FakeClock())

    def down(wait: int) -> dict[str, Any]:
        raise ConnectFailed("refused")

    clock = FakeClock()
    with pytest.raises(TimedOut):
        follow(down, what="d", timeout=3, long_poll=False, clock=clock)
    assert clock.t == pytest.approx(3, abs=0.01)

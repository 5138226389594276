"""An st that hangs past its timeout is killed and reported by the hostile part, not a crash of it."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from chaos import hostile


def fake_st(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """An `st` beside a pretend interpreter: `_st` runs the one beside sys.executable."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    st = bin_dir / "st"
    st.write_text("#!/bin/sh\n" + script)
    st.chmod(st.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))


def test_a_hung_st_is_killed_and_answered_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_st(tmp_path, monkeypatch, "echo started\nexec sleep 30\n")
    code = hostile._st(["run"], cwd=tmp_path, timeout=0.5, error_log=tmp_path / "errors.jsonl")
    assert code == hostile.ST_KILLED
    output = (tmp_path / "st-output.txt").read_text()
    assert "started" in output
    assert "did not finish within 0.5 s and was killed" in output


def test_st_s_own_exit_code_is_passed_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_st(tmp_path, monkeypatch, "exit 1\n")
    assert hostile._st(["run"], cwd=tmp_path, timeout=10, error_log=tmp_path / "e.jsonl") == 1

"""`up --simulate` run again on the same data directory, as `make demo` twice in a row: without
--fresh the seeded alerts were recorded by the first run, so the second cannot complete; it
must say so (what is missing, which stage is behind, where the logs are) and stop with a
non-zero exit instead of waiting out --wait. With --fresh (what `make demo` uses) every run
starts from a clean directory and completes like the first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

CLI = [sys.executable, "-m", "alert_timing.cli"]
SMALL = ["--alerts", "150", "--span-hours", "1", "--wait", "600"]


def up(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # a short wall-clock window close, so a stalled run is recognised sooner
    env = {**os.environ, "ALERT_TIMING_IDLE_CLOSE_AFTER_S": "5"}
    env.pop("NATS_URL", None)
    return subprocess.run([*CLI, "up", "--simulate", *SMALL, "--data-dir", str(data_dir), *extra],
                          capture_output=True, text=True, timeout=900, env=env, cwd=data_dir.parent)


def last_line(err: str) -> str:
    return [line for line in err.replace("\r", "\n").splitlines() if line.strip()][-1]


def test_a_second_run_says_what_is_missing_and_fresh_runs_again(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    first = up(demo, "--fresh")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"fresh run: {demo} is new\n"), first.stdout
    assert "Q&A dashboard:" in first.stdout

    again = up(demo)
    assert again.returncode == 1, again.stderr
    assert "Traceback" not in again.stderr, again.stderr
    assert f"note: {demo} holds an earlier run" in again.stderr
    assert "  records missing: " in again.stderr
    assert "  stages (pending / ack pending): hub-capture 0/0, " in again.stderr
    assert f"  logs: {demo / 'logs'}" in again.stderr
    # stopped because it cannot complete, not because --wait (600 s) ran out
    assert last_line(again.stderr).startswith("alert-timing up: stopped: this run cannot complete: "), again.stderr
    assert "Q&A dashboard:" not in again.stdout

    fresh = up(demo, "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.startswith(f"fresh run: cleared {demo} "), fresh.stdout
    assert "Q&A dashboard:" in fresh.stdout
    for log in (demo / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(), log

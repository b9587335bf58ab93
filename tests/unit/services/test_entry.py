"""``python -m services.<name>``: each service starts on its own, with the runtime and ``shared``
only (no tool code: not the CLI, the simulator, the benchmarks), answers ``--help``, and says in
one line when NATS cannot be reached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.runtime.entry import module_of
from shared import bus
from shared import subjects as s

REPO = Path(__file__).resolve().parents[3]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=REPO)


def imported(importtime_stderr: str) -> set[str]:
    """Module names from ``-X importtime`` output (``import time: self | cumulative | name``)."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


@pytest.mark.parametrize("name", s.SERVICES)
def test_a_service_module_loads_no_tool_code(name: str) -> None:
    done = run("-X", "importtime", "-m", module_of(name), "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"python -m {module_of(name)}" in done.stdout and "--nats-url" in done.stdout
    modules = imported(done.stderr)
    assert f"services.{module_of(name).split('.')[1]}.app" in modules  # the service itself was loaded
    tools = sorted(m for m in modules if m.split(".")[0] in ("alert_timing", "alert_timing_benchmarks", "tools"))
    assert tools == []
    others = {module_of(other) for other in s.SERVICES if other != name}
    assert not {m for m in modules if m.rsplit(".", 1)[0] in others or m in others}


def test_unreachable_nats_is_one_line_and_exit_2() -> None:
    nowhere = f"nats://127.0.0.1:{bus.free_port()}"
    done = run("-m", module_of(s.HUB_CAPTURE), "--nats-url", nowhere)
    assert done.returncode == 2
    assert done.stderr.startswith(f"services.hub_capture: cannot reach NATS at {nowhere}: ")
    assert "Traceback" not in done.stderr

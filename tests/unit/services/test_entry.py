"""``python -m services.<name>``: each service starts on its own, with the runtime and ``shared``
only (no tool code: not the CLI, the simulator, the benchmarks), answers ``--help``, and says in
one line when NATS cannot be reached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alert_timing.nats_server import free_port
from services.runtime.entry import module_of
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


@pytest.mark.parametrize("name", s.SERVICES)
def test_sys_modules_of_a_service_hold_no_tool_code(name: str) -> None:
    """The same from inside: what ``python -m services.<name>`` imports before it runs."""
    probe = (f"import sys, {module_of(name)}.__main__; "
             "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in "
             "('alert_timing', 'alert_timing_benchmarks', 'tools', 'benchmarks')))")
    done = run("-c", probe)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []


def test_unreachable_nats_is_one_line_and_exit_2() -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"
    done = run("-m", module_of(s.HUB_CAPTURE), "--nats-url", nowhere)
    assert done.returncode == 2
    assert done.stderr.startswith(f"services.hub_capture: cannot reach NATS at {nowhere}: ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("env", "expected"), [
    ({"ALERT_TIMING_JOURNEY_SAMPLE_RATIO": "2"}, "ALERT_TIMING_JOURNEY_SAMPLE_RATIO='2': expected `float` <= 1.0"),
    ({"ALERT_TIMING_LOG_LEVEL": "loud"}, "ALERT_TIMING_LOG_LEVEL='loud': "),
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin' is not one of otlp, console, none"),
    ({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
     "OTEL_EXPORTER_OTLP_PROTOCOL='carrier-pigeon' is not one of http/protobuf, grpc"),
    ({"ALERT_TIMING_METRICS_PARTITIONS": "2", "ALERT_TIMING_METRICS_PARTITION": "2"},
     "ALERT_TIMING_METRICS_PARTITION=2 is not one of the 2 partitions (0..1)"),
    ({"ALERT_TIMING_DELIVERY_URL": "ftp://127.0.0.1/landing"},
     "ALERT_TIMING_DELIVERY_URL=ftp://127.0.0.1/landing: use sftp://USER@HOST:PORT/PATH or file:///PATH"),
])
@pytest.mark.parametrize("command", ["python -m", "alert-timing service"])
def test_a_bad_setting_is_one_line_and_exit_2(command: str, env: dict[str, str], expected: str) -> None:
    """Settings and the OpenTelemetry environment are checked before NATS is tried (nothing
    listens at the URL): one line naming the variable, exit status 2, no traceback."""
    nowhere = f"nats://127.0.0.1:{free_port()}"
    if command == "python -m":
        args, prog = ["-m", module_of(s.METRICS)], module_of(s.METRICS)
    else:
        args, prog = ["-m", "alert_timing.cli", "service", s.METRICS], "alert-timing service"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ALERT_TIMING_"))}
    done = subprocess.run([sys.executable, *args, "--nats-url", nowhere], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={**clean, **env})
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: {expected}"), done.stderr
    assert done.returncode == 2

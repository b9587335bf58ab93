"""`alert-timing up` supervises: a service killed under it comes back by itself, and the
restart is counted in `alert-timing status`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


def test_a_killed_service_is_started_again_and_counted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "ALERT_TIMING_", "OTEL_"))}
    up = subprocess.Popen([sys.executable, "-m", "alert_timing.cli", "up", "--data-dir", str(data)], env=env,
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        assert up.stdout is not None
        for line in up.stdout:
            if line.startswith("nats-server"):
                url = line.split()[1]
            if line.startswith("running;"):
                break
        assert url, "up did not start"

        def service_pid(name: str) -> int | None:
            found = subprocess.run(["pgrep", "-f", "-P", str(up.pid), f"alert_timing.cli service {name}"],
                                   capture_output=True, text=True).stdout.split()
            return int(found[0]) if found else None

        deadline = time.monotonic() + 60
        first = None
        while first is None and time.monotonic() < deadline:
            first = service_pid("csp-enrichment")
            time.sleep(0.2)
        assert first is not None, "csp-enrichment not running under up"
        os.kill(first, signal.SIGKILL)

        again = None
        while time.monotonic() < deadline:
            again = service_pid("csp-enrichment")
            if again is not None and again != first:
                break
            time.sleep(0.2)
        assert again is not None and again != first, "csp-enrichment was not started again"
        counts: dict = {}
        while time.monotonic() < deadline and "csp-enrichment-0" not in counts:  # written just after
            if (data / "supervisor.json").exists():
                counts = json.loads((data / "supervisor.json").read_text())["services"]
            time.sleep(0.1)
        assert counts["csp-enrichment-0"]["restarts"] == 1
        assert counts["csp-enrichment-0"]["last_exit_code"] == -signal.SIGKILL

        status = subprocess.run([sys.executable, "-m", "alert_timing.cli", "status", "--json"], cwd=REPO,
                                env=env | {"NATS_URL": url, "ALERT_TIMING_DATA_DIR": str(data)},
                                capture_output=True, text=True, timeout=60)
        assert json.loads(status.stdout)["restarts"]["csp-enrichment-0"]["restarts"] == 1, status.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()

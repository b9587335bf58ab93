"""Throttled storms, AD1 from CSP power-outage notifications and the SIT scenario, end to end:
the four services as processes on their own fresh nats-server, the simulator publishing and
answering as the Service Users and the DSP's storm protection would."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alert_timing.simulator.run import RunResult, run_traffic
from alert_timing.simulator.traffic import TrafficConfig
from shared.settings import Settings

pytestmark = pytest.mark.integration

OPERATOR = "90-B3-D5-1F-30-02-00-00"


def latest_reports(data_dir: Path) -> list[dict]:
    """The latest revision of each window's report file."""
    latest: dict[str, tuple[int, Path]] = {}
    for path in (data_dir / "ast").rglob("ast_*_r*.json"):
        stem, revision = path.stem.rsplit("_r", 1)
        if stem not in latest or int(revision) > latest[stem][0]:
            latest[stem] = (int(revision), path)
    return [json.loads(p.read_text()) for _, p in latest.values()]


@pytest.mark.timeout(300)
def test_storm_is_throttled_never_no_handshake_and_outages_raise_ad1(topology: tuple[Settings, Path]) -> None:
    settings, data_dir = topology
    config = TrafficConfig(alerts=1_500, seed=11, span_ms=2 * 3_600_000, storm_at_ms=3_600_000, storm_share=0.3,
                           outage_share=0.02)
    result: RunResult = asyncio.run(run_traffic(settings, config, wait_s=180, show=False))
    assert result.complete, "not every record or window report came out"
    traffic, records = result.traffic, result.records
    assert set(records) == traffic.expected_deliveries

    # storm protection: every delivery the DSP discarded is throttled, none of them no_handshake
    assert len(traffic.throttled) > 20
    throttled = {d for d, r in records.items() if r.status == "throttled"}
    assert throttled == traffic.throttled
    for d in traffic.throttled:
        r = records[d]
        assert r.su_passed is None and r.su_acknowledged is None and r.end_to_end_ms is None
    assert {d: r.throttled_count for d, r in records.items() if r.throttled_count is not None} == \
        traffic.throttled_counts
    assert traffic.throttled_counts  # some forwarded alert said how many were held back

    # AD1: one per notification of an outage >= 3 minutes, none for a shorter one
    outages = [i for i in traffic.inputs if i.kind == "outage"]
    ad1 = {d: r for d, r in records.items() if r.dcc_alert_code == "AD1"}
    assert ad1 and set(ad1) == {d for i in outages for d in i.deliveries}
    assert len(ad1) < len(outages)  # the short ones raised nothing
    for r in ad1.values():
        assert (r.category, r.service_user_id, r.alert_code, r.device_alert_time) == (
            "dcc_alert", OPERATOR, None, None)
        assert r.csp_received and r.csp_sent and r.dsp_received

    # window reports count the throttled ones separately, and keep them out of the legs
    reports = latest_reports(data_dir)
    totals = [row for rep in reports for row in rep["rows"] if (row["region"], row["category"]) == ("all", "all")]
    assert sum(row["throttled"] for row in totals) == len(throttled)
    assert sum(row["no_handshake"] for row in totals) == sum(r.status == "no_handshake" for r in records.values())
    measured = sum(r.csp_to_dsp_ms is not None and r.csp_to_dsp_ms >= 0 and r.status != "throttled"
                   for r in records.values())
    assert sum(row["legs"]["csp_to_dsp_ms"]["count"] for row in totals) == measured


def simulate_sit(settings: Settings, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alert_timing.cli", "simulate", "--scenario", "sit", "--nats-url", settings.nats_url,
         "--wait", "150", *extra],
        capture_output=True, text=True, timeout=240, env={**os.environ, **(env or {})}, check=False)


@pytest.mark.timeout(300)
def test_sit_scenario_passes_and_says_what_fails(topology: tuple[Settings, Path], tmp_path: Path) -> None:
    settings, _ = topology
    done = simulate_sit(settings)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for sample in ("AD1 power outage", "8F3F to supplier", "810D to supplier", "8F0F to supplier",
                   "8F72 to supplier", "N39 via", "N53 via", "N54 via", "N62 via"):
        rows = [ln for ln in lines if ln.startswith(sample)]
        assert len(rows) >= 2 and all(ln.split()[-1] == "pass" for ln in rows), (sample, done.stdout)
    assert lines[-1] == "19/19 passed"

    # a rule table in which nothing raises N54: those rows fail, and so does the command
    rules = tmp_path / "rules.toml"
    rules.write_text('[device_alerts.8F3F]\ndcc_alerts = ["N39"]\n[device_alerts.810D]\ndcc_alerts = ["N53"]\n'
                     '[device_alerts.8F72]\ndcc_alerts = ["N62"]\n')
    failed = simulate_sit(settings, "--seed", "2", env={"ALERT_TIMING_DCC_RULES": str(rules)})
    assert failed.returncode == 1, failed.stdout + failed.stderr
    n54 = [ln for ln in failed.stdout.splitlines() if ln.startswith("N54")]
    assert n54 and all("FAIL" in ln and "no rule" in ln for ln in n54)


@pytest.mark.timeout(300)
def test_sit_scenario_passes_against_a_used_pipeline(topology: tuple[Settings, Path]) -> None:
    """After traffic from 2023-06-01 10:00 into the next day the pipeline's event time is past
    the SIT's default start (00:00 that day) by more than it remembers deliveries (a day): the
    samples are dated after the pipeline's own event time, so their acknowledgements count as
    they do on a fresh pipeline."""
    settings, _ = topology
    ten = int(datetime(2023, 6, 1, 10, tzinfo=UTC).timestamp() * 1000)
    config = TrafficConfig(alerts=300, seed=23, start_ms=ten, span_ms=16 * 3_600_000)
    result: RunResult = asyncio.run(run_traffic(settings, config, wait_s=180, show=False))
    assert result.complete, "not every record or window report came out"
    done = simulate_sit(settings)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "19/19 passed", done.stdout

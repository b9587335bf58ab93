"""The simulator's slow Service Users and hub cohorts, end to end: the four services on their
own fresh nats-server, the simulator publishing and answering, then ``report`` over what the
metrics service wrote: the slow Service Users head ``by_service_user.csv``, the late hubs head
``worst_hubs.csv`` and the CSP North hubs without HubTimestamp follow them, every alert
counted as missing its HubTimestamp."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

from alert_timing.report import main as report_main
from alert_timing.simulator.run import RunResult, run_traffic
from alert_timing.simulator.traffic import TrafficConfig, cohorts
from shared.settings import Settings

pytestmark = pytest.mark.integration


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.timeout(300)
def test_slow_service_users_and_late_and_silent_hubs_head_their_files(topology: tuple[Settings, Path],
                                                                       tmp_path: Path) -> None:
    settings, data_dir = topology
    config = TrafficConfig(alerts=700, seed=31, span_ms=2 * 3_600_000, storm_share=0.0, cohort_share=0.25,
                           late_hubs=2, silent_hubs=2, suppliers=6, slow_service_users=2)
    slow, late, silent = cohorts(config)
    assert len(slow) == 2 and len(late) == 2 and len(silent) == 2
    assert cohorts(config) == (slow, late, silent)  # drawn from the seed alone
    result: RunResult = asyncio.run(run_traffic(settings, config, wait_s=180, show=False))
    assert result.complete, "not every record or window report came out"

    out = tmp_path / "report"
    assert report_main(["--data-dir", str(data_dir), "--from", "2023-06-01T00:00:00Z",
                        "--to", "2023-06-02T00:00:00Z", "--out", str(out), "--quiet"]) == 0

    users = rows(out / "by_service_user.csv")
    assert {r["service_user_id"] for r in users[:2]} == set(slow)
    # half their acknowledgements come 30 s or more late; everyone else's median is well under that
    assert all(float(r["su_handshake_p50_ms"]) >= config.slow_ack_ms[0] for r in users[:2])
    assert all(float(r["su_handshake_p50_ms"]) < config.slow_ack_ms[0] for r in users[2:])

    hubs = rows(out / "worst_hubs.csv")
    records = result.records.values()
    # only the cohorts' hubs send 20 or more alerts in two hours: they are the whole list
    assert [int(r["rank"]) for r in hubs] == [1, 2, 3, 4]
    assert {int(r["comms_hub_id"]) for r in hubs[:2]} == {hub for _, hub in late}
    for r in hubs[:2]:
        assert float(r["hub_to_csp_p50_ms"]) >= config.late_hub_ms
    assert {int(r["comms_hub_id"]) for r in hubs[2:]} == {hub for _, hub in silent}
    for r in hubs[2:]:
        hub = int(r["comms_hub_id"])
        mine = [x for x in records if x.comms_hub_id == hub and x.status != "throttled"]
        assert r["region"] == "north" and r["hub_to_csp_p95_ms"] == ""
        assert int(r["missing_hub_timestamp"]) == int(r["alerts"]) == sum(
            1 for x in records if x.comms_hub_id == hub) >= 20
        assert all(x.chf_received is None for x in mine)

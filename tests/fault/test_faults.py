"""Nothing lost, nothing counted twice, under faults: services killed mid-run, the broker
restarted, the metrics service restarted after windows closed, a cluster node lost.

Each case runs the seeded traffic of ``conftest.traffic_config`` through the four service
processes while the fault happens at a seeded point, then is held to ``conftest.check``:
the same records and 15-minute figures as the undisturbed run of the seed.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from shared import bus
from shared import subjects as s
from tests.harness.faults import Baseline, Harness, check, run_case, seeded

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_undisturbed_run(baseline: Baseline) -> None:
    outcome = baseline.outcome()
    check(outcome, None)
    traffic = outcome.traffic
    assert traffic.count("malformed") > 0
    assert traffic.count("duplicate") > 0
    assert any(len(i.deliveries) > 1 for i in traffic.inputs if i.kind == "alert"), "fan-out"


def test_each_service_killed_once_mid_run(tmp_path: Path, baseline: Baseline) -> None:
    """SIGKILL each service once, at a seeded point while traffic flows, and start it again."""
    rng = seeded("sigkill")
    services = list(s.SERVICES)
    rng.shuffle(services)
    times = sorted(rng.uniform(1.0, 9.0) for _ in services)

    async def faults(h: Harness) -> None:
        for at, name in zip(times, services, strict=True):
            await h.at(at)
            code = await h.kill_and_restart(f"{name}-0", signal.SIGKILL, down_s=rng.uniform(0.2, 1.0))
            assert code == -signal.SIGKILL

    outcome, _ = run_case(tmp_path, "sigkill-each-service", faults)
    assert len(outcome.faults) == 2 * len(services)
    check(outcome, baseline.outcome())


def test_nats_server_restarted_mid_run(tmp_path: Path, baseline: Baseline) -> None:
    """Stop nats-server while traffic flows and start it again (same port, same store), twice:
    publishes in flight are lost with the connection, and the services publish them again."""
    rng = seeded("nats-restart")

    async def faults(h: Harness) -> None:
        await h.wait_for(s.STREAM_OUT, s.RECORD, 200)  # records flowing: metrics is busy
        for at in (rng.uniform(2.0, 5.0), rng.uniform(6.0, 9.0)):
            await h.at(at)
            await h.restart_server(0, down_s=rng.uniform(0.5, 2.0))

    outcome, _ = run_case(tmp_path, "nats-server-restart", faults)
    assert len(outcome.faults) == 4
    check(outcome, baseline.outcome())


def test_metrics_restarted_after_windows_closed(tmp_path: Path, baseline: Baseline) -> None:
    """Restart the metrics service once windows have closed: killed, killed again soon after
    its successor started consuming (while the first one's unacked messages may still be held),
    then stopped gently. Each start rebuilds the state from the event log; no window revision
    is reported twice and none is lost."""
    rng = seeded("metrics-restart")
    first, second = rng.randint(3, 8), rng.randint(15, 25)
    key = f"{s.METRICS}-0"

    async def faults(h: Harness) -> None:
        await h.wait_for(s.STREAM_OUT, s.REPORT_15M, first)
        assert await h.kill_and_restart(key, signal.SIGKILL) == -signal.SIGKILL
        await asyncio.sleep(rng.uniform(0.1, 0.5))  # the successor has just started consuming
        assert await h.kill_and_restart(key, signal.SIGKILL) == -signal.SIGKILL
        await h.wait_for(s.STREAM_OUT, s.REPORT_15M, second)
        assert await h.kill_and_restart(key, signal.SIGTERM) == 0

    outcome, _ = run_case(tmp_path, "metrics-restart", faults)
    check(outcome, baseline.outcome())


def test_cluster_node_lost_mid_run(tmp_path: Path, baseline: Baseline) -> None:
    """Three nats-servers in a cluster, streams at three replicas, clients given all three
    URLs; the node leading AST_EVENTS is killed mid-run and the pipeline carries on."""
    rng = seeded("cluster")

    async def faults(h: Harness) -> None:
        nc = await bus.connect(h.settings(), "fault-cluster")
        try:
            info = await nc.jetstream(timeout=10).stream_info(s.STREAM_EVENTS)
        finally:
            await nc.close()
        assert info.config.num_replicas == 3
        leader = info.cluster.leader if info.cluster else None
        index = int(leader.removeprefix("node")) if leader else rng.randrange(3)
        await h.at(rng.uniform(2.0, 7.0))
        await h.kill_node(index)

    outcome, _ = run_case(tmp_path, "cluster-node-lost", faults, nodes=3)
    check(outcome, baseline.outcome())

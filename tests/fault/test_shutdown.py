"""Graceful shutdown: SIGTERM mid-run. Each service finishes the batch in hand (published and
acked), hands back what it fetched but had not started, and exits 0 within its drain bound
(Settings.drain_timeout_s, 20 s; compose gives it 30 s). Nothing is lost: the restarted
service and redelivery carry the run to the same outcome as the undisturbed one."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from alert_timing.nats_server import EmbeddedNats
from shared import bus
from shared import subjects as s
from tests.harness.faults import Baseline, Harness, check, run_case, seeded

pytestmark = [pytest.mark.slow, pytest.mark.integration]


async def held(h: Harness, service: str) -> dict[str, int]:
    """Messages the service's durables delivered and never had acknowledged. Asked again for a
    few seconds (the server applies acks it has received asynchronously); a message really
    left behind stays pending for ack_wait (30 s)."""
    nc = await bus.connect(h.settings(), "fault-held")
    try:
        js = nc.jetstream(timeout=10)
        for _ in range(30):
            pending = {spec.durable: (await js.consumer_info(spec.stream, spec.durable)).num_ack_pending or 0
                       for spec in bus.consumer_specs(h.settings().metrics_partitions) if spec.service == service}
            if not any(pending.values()):
                break
            await asyncio.sleep(0.1)
        return pending
    finally:
        await nc.close()


def test_sigterm_mid_run_drains_and_exits_zero(tmp_path: Path, baseline: Baseline) -> None:
    rng = seeded("sigterm")
    services = list(s.SERVICES)
    rng.shuffle(services)
    times = sorted(rng.uniform(1.0, 9.0) for _ in services)
    left: dict[str, dict[str, int]] = {}
    codes: dict[str, int | None] = {}

    async def faults(h: Harness) -> None:
        assert h.sup is not None
        bound = h.settings().drain_timeout_s + 10.0
        for at, name in zip(times, services, strict=True):
            await h.at(at)
            key = f"{name}-0"
            codes[key] = await asyncio.to_thread(h.sup.signal_service, key, signal.SIGTERM, bound)
            h.note(f"SIGTERM {key} -> exit {codes[key]}")
            left[name] = await held(h, name)  # before anyone else could take its messages
            await h.restart(key)

    outcome, _ = run_case(tmp_path, "sigterm-each-service", faults)
    assert codes == {f"{name}-0": 0 for name in services}, codes
    # The batch in hand was acked and the fetched rest handed back: nothing waits for ack_wait.
    assert all(n == 0 for pending in left.values() for n in pending.values()), left
    check(outcome, baseline.outcome())


def test_sigterm_while_reconnecting_logs_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The broker is gone and the service is reconnecting when SIGTERM comes: no drain is
    possible. It still stops cleanly (exit 0), with no traceback in its log and one line
    saying what it handed back."""
    import time

    from alert_timing.supervisor import Supervisor, run_bootstrap
    from shared.settings import load

    server = EmbeddedNats(tmp_path / "jetstream").start()
    settings = load(nats_url=server.url, data_dir=str(tmp_path))
    sup = Supervisor(settings, tmp_path, server.url)
    try:
        run_bootstrap(settings)
        proc = sup.start_service(s.METRICS)
        log = tmp_path / "logs" / f"{s.METRICS}-0.log"
        deadline = time.monotonic() + 120
        while "service started" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "service started" in log.read_text(), log.read_text()
        server.stop()
        while "Connection broken" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        code = sup.signal_service(f"{s.METRICS}-0", signal.SIGTERM, settings.drain_timeout_s + 10)
    finally:
        sup.stop()
        server.stop()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text
    drained = [line for line in text.splitlines() if "drain: handed back" in line]
    assert len(drained) == 1 and "ConnectionReconnectingError" in drained[0], text

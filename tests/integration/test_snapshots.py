"""Metrics state snapshots against a real nats-server: a restart after a long history loads the
snapshot and replays only what came after it; a corrupt snapshot falls back to a full replay
with a warning; a SIGKILL in the tail of events after a snapshot loses nothing and counts
nothing twice; a message left unacked below later ones when a snapshot is taken is applied
after a restart. Whatever the path, the reports are exactly those of one replay of the whole
log (no revision number issued twice with different content)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from alert_timing.nats_server import EmbeddedNats
from alert_timing.supervisor import Supervisor, run_bootstrap
from alert_timing_benchmarks.metrics_core import synthetic_events
from services.metrics.app import metrics_config
from services.metrics.core import MetricsCore
from services.metrics.rebuild import read_events
from services.metrics.snapshot import object_name
from shared import bus
from shared import subjects as s
from shared.eventlog import read_messages
from shared.events import (
    AnyEvent,
    Batch,
    ClockTick,
    DeliveryAttempted,
    DeliveryExpected,
    ServiceResponseSeen,
    batch_id,
    encoder,
)
from shared.settings import Settings, load
from tests.harness.metrics_events import ack, exp

pytestmark = pytest.mark.integration

HISTORY = synthetic_events(6_000, span_ms=6 * 3_600_000, seed=11)
CUT = len(HISTORY) * 3 // 5


def subject_of(event: AnyEvent) -> str:
    if isinstance(event, DeliveryExpected):
        return s.expected(0)
    if isinstance(event, DeliveryAttempted):
        return s.attempted(0)
    if isinstance(event, ServiceResponseSeen):
        return s.RESPONSE_SEEN
    assert isinstance(event, ClockTick)
    return s.CLOCK


async def publish(settings: Settings, events: list[AnyEvent]) -> None:
    """The events as dsp-mapping and csp-enrichment would put them on the log: envelopes of
    consecutive events of one subject, in order."""
    nc = await bus.connect(settings, "test-publish")
    js = nc.jetstream(timeout=10)
    try:
        chunk: list[AnyEvent] = []
        out: list[bus.Outgoing] = []
        for event in [*events, None]:
            if chunk and (event is None or subject_of(event) != subject_of(chunk[0]) or len(chunk) == 200):
                out.append(bus.Outgoing(subject_of(chunk[0]), encoder.encode(Batch(events=chunk)), batch_id(chunk)))
                chunk = []
            if event is not None:
                chunk.append(event)
        for i in range(0, len(out), 200):
            await bus.publish_all(js, out[i:i + 200], 10.0)
    finally:
        await nc.close()


async def settled(settings: Settings, within_s: float = 120.0) -> None:
    """Until the metrics consumer has every message acked."""
    nc = await bus.connect(settings, "test-settle")
    js = nc.jetstream(timeout=10)
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            info = await js.consumer_info(s.STREAM_EVENTS, bus.metrics_durable(0))
            if not info.num_pending and not info.num_ack_pending:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"metrics consumer never settled: {info}")
    finally:
        await nc.close()


Stored = dict[tuple[str, int], set[bytes]]


async def reports_and_reference(settings: Settings) -> tuple[Stored, dict, Stored, dict]:
    """The reports and records the service stored ((window or delivery, revision) -> every
    content stored under it), and those of one replay of its whole input log through a fresh core."""
    nc = await bus.connect(settings, "test-collect")
    stored: Stored = {}
    records: Stored = {}
    reference: dict[tuple[str, int], bytes] = {}
    reference_records: dict[tuple[str, int], bytes] = {}
    try:
        async for msgs in read_messages(nc, s.STREAM_OUT, [s.RECORD, s.REPORT_15M], 1):
            for m in msgs:
                body = msgspec.json.decode(m.data)
                if m.subject == s.RECORD:
                    records.setdefault((body["delivery_id"], body["revision"]), set()).add(m.data)
                    continue
                stored.setdefault((body["window_start"], body["revision"]), set()).add(m.data)
        spec = next(c for c in bus.consumer_specs(1) if c.durable == bus.metrics_durable(0))
        core = MetricsCore(metrics_config(settings))
        async for events in read_events(nc, spec.filter_subjects, 1):
            output = core.apply(events)
            for closed in output.closed:
                reference[(closed.report.window_start, closed.report.revision)] = encoder.encode(closed.report)
            for record in output.records:
                reference_records[(record.delivery_id, record.revision)] = encoder.encode(record)
    finally:
        await nc.close()
    return stored, reference, records, reference_records


def log_lines(path: Path, event: str) -> list[dict]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if event in line:
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                found.append({"text": line})
    return found


def wait_for_line(path: Path, event: str, count: int = 1, timeout: float = 60.0,
                  proc: subprocess.Popen | None = None) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = log_lines(path, event) if path.exists() else []
        if len(found) >= count:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"metrics exited with {proc.returncode}: {path.read_text()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"no {event!r} line in {path}: {path.read_text()[-3000:]}")


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = EmbeddedNats(tmp_path / "jetstream").start()
    settings = load(nats_url=server.url, data_dir=str(tmp_path / "data"))
    run_bootstrap(settings)
    sup = Supervisor(settings, tmp_path / "data", server.url,
                     extra_env={"ALERT_TIMING_SNAPSHOT_INTERVAL_S": "3600"})
    yield settings, sup, tmp_path / "data" / "logs" / f"{s.METRICS}-0.log"
    sup.stop()
    server.stop()


def check_figures(settings: Settings) -> tuple[Stored, dict]:
    """The stored reports and records against one replay of the whole log; (records, reference records)."""
    stored, reference, records, reference_records = asyncio.run(reports_and_reference(settings))
    for what in (stored, records):
        twice = {key: len(v) for key, v in what.items() if len(v) > 1}
        assert not twice, f"revision numbers issued with different content: {twice}"
    assert {key: next(iter(v)) for key, v in stored.items()} == reference
    assert {key: next(iter(v)) for key, v in records.items()} == reference_records
    assert len(reference) > 20
    assert len({d for d, _ in reference_records}) > len(HISTORY) // 3
    return records, reference_records


def test_restart_after_a_long_history_loads_the_snapshot(world) -> None:  # type: ignore[no-untyped-def]
    settings, sup, log = world
    asyncio.run(publish(settings, HISTORY[:CUT]))
    proc = sup.start_service(s.METRICS)
    asyncio.run(settled(settings))
    assert sup.signal_service(f"{s.METRICS}-0", signal.SIGTERM) == 0  # drain: a snapshot
    [written] = wait_for_line(log, "metrics snapshot written")
    assert written["stream_seq"] > 0 and written["bytes"] > 0

    asyncio.run(publish(settings, HISTORY[CUT:]))
    proc = sup.restart_service(f"{s.METRICS}-0")
    rebuilt = wait_for_line(log, "metrics state rebuilt", count=2, proc=proc)[-1]
    assert rebuilt["from_snapshot_seq"] == written["stream_seq"]
    assert rebuilt["events"] == 0  # nothing before the snapshot read again
    assert not log_lines(log, "no usable metrics snapshot")
    asyncio.run(settled(settings))
    check_figures(settings)


def test_corrupt_snapshot_falls_back_to_a_full_replay(world) -> None:  # type: ignore[no-untyped-def]
    settings, sup, log = world
    asyncio.run(publish(settings, HISTORY[:CUT]))
    sup.start_service(s.METRICS)
    asyncio.run(settled(settings))
    assert sup.signal_service(f"{s.METRICS}-0", signal.SIGTERM) == 0
    wait_for_line(log, "metrics snapshot written")

    async def corrupt() -> None:
        nc = await bus.connect(settings, "test-corrupt")
        try:
            obs = await nc.jetstream(timeout=10).object_store(s.METRICS_SNAPSHOTS)
            name = object_name(0, "a")
            data = bytearray((await obs.get(name)).data)
            data[-100] ^= 0xFF  # one bit pattern in the state, header intact
            info = await obs.get_info(name)
            from nats.js import api

            await obs.put(name, bytes(data), meta=api.ObjectMeta(description=info.description))
        finally:
            await nc.close()

    asyncio.run(corrupt())
    asyncio.run(publish(settings, HISTORY[CUT:]))
    proc = sup.restart_service(f"{s.METRICS}-0")
    rebuilt = wait_for_line(log, "metrics state rebuilt", count=2, proc=proc)[-1]
    [refused] = log_lines(log, "metrics snapshot not used")
    assert refused["reason"] == "checksum mismatch" and refused["level"] == "warning"
    assert log_lines(log, "no usable metrics snapshot")[0]["level"] == "warning"
    assert rebuilt["from_snapshot_seq"] == 0 and rebuilt["events"] > 0
    asyncio.run(settled(settings))
    check_figures(settings)


async def consumer(settings: Settings):  # type: ignore[no-untyped-def]
    nc = await bus.connect(settings, "test-consumer")
    try:
        return await nc.jetstream(timeout=10).consumer_info(s.STREAM_EVENTS, bus.metrics_durable(0))
    finally:
        await nc.close()


async def mid_batch(settings: Settings) -> int:
    """Polls until the metrics consumer has messages delivered and not acked while more wait
    (killed then, it dies holding some); how many it held, 0 if it never was."""
    for _ in range(600):
        info = await consumer(settings)
        if info.num_ack_pending and info.num_pending:
            return info.num_ack_pending
        await asyncio.sleep(0.005)
    return 0


def test_sigkill_in_the_tail_after_a_snapshot_loses_nothing(world) -> None:  # type: ignore[no-untyped-def]
    """Killed after a snapshot, while consuming the events since it (some applied and acked,
    some delivered and not acked): the successor loads the snapshot, replays the tail up to
    what was delivered and goes on at once (the held messages come back later as duplicates).
    Every record of the tail comes out exactly, none doubled, as in one undisturbed replay."""
    settings, sup, log = world
    asyncio.run(publish(settings, HISTORY[:CUT]))
    proc = sup.start_service(s.METRICS)
    asyncio.run(settled(settings))
    assert sup.signal_service(f"{s.METRICS}-0", signal.SIGTERM) == 0  # drain: a snapshot
    [written] = wait_for_line(log, "metrics snapshot written")
    assert written["stream_seq"] > 0
    proc = sup.restart_service(f"{s.METRICS}-0")
    wait_for_line(log, "service started", count=2, proc=proc)

    asyncio.run(publish(settings, HISTORY[CUT:]))  # the tail, consumed as it comes
    caught = asyncio.run(mid_batch(settings))
    assert sup.signal_service(f"{s.METRICS}-0", signal.SIGKILL) == -signal.SIGKILL
    assert len(log_lines(log, "metrics snapshot written")) == 1  # none since the tail began
    proc = sup.restart_service(f"{s.METRICS}-0")
    rebuilt = wait_for_line(log, "metrics state rebuilt", count=3, proc=proc)[-1]
    assert rebuilt["from_snapshot_seq"] == written["stream_seq"]
    assert rebuilt["up_to_seq"] > written["stream_seq"] and rebuilt["events"] > 0  # the tail, replayed
    assert not log_lines(log, "waiting for the messages")
    if caught:
        assert rebuilt["up_to_seq"] >= rebuilt["ack_floor"]
    asyncio.run(settled(settings))
    records, reference_records = check_figures(settings)
    tail = {e.delivery_id for e in HISTORY[CUT:] if isinstance(e, (DeliveryExpected, DeliveryAttempted))}
    tail_reference = {key: {value} for key, value in reference_records.items() if key[0] in tail}
    assert len(tail_reference) > len(tail) // 2
    assert {key: value for key, value in records.items() if key[0] in tail} == tail_reference


def test_message_unacked_below_a_snapshot_is_applied_after_a_restart(world) -> None:  # type: ignore[no-untyped-def]
    """One message is delivered and never acked (as one NAKed, or lost on its way) while the
    messages after it are applied and acked; metrics drains and writes a snapshot then. After a
    restart the message comes back and is applied: the snapshot's sequence is the ack floor,
    below it, not the highest sequence applied, which would have the message dropped as one
    applied at start. Its records come out exactly as in one replay of the whole log."""
    settings, sup, log = world
    expected = [exp(f"d{i}", f"10:00:{i:02d}.000") for i in range(40)]
    acknowledged = [ack(e, 2_000) for e in expected]  # one message: the one left unacked
    later = [exp(f"e{i}", f"10:01:{i:02d}.000") for i in range(40)]
    later += [ack(e, 2_000) for e in later]
    key = f"{s.METRICS}-0"

    async def leave_one_unacked() -> int:
        # Before metrics runs, a subscriber of ours is the durable's only one (a push durable
        # cannot be steered to one member of its deliver group while metrics is bound): it acks
        # the first message and keeps the second, which metrics then finds delivered to a
        # predecessor (applied by its start-up rebuild, never acked), while the later ones are
        # applied and acked as they come.
        nc = await bus.connect(settings, "test-unacked")
        try:
            js = nc.jetstream(timeout=10)
            spec = next(c for c in bus.consumer_specs(1) if c.durable == bus.metrics_durable(0))
            sub = await js.subscribe("", queue=spec.durable, durable=spec.durable, stream=spec.stream,
                                     manual_ack=True)
            await publish(settings, expected)
            await (await sub.next_msg(timeout=10)).ack_sync()
            await publish(settings, acknowledged)
            held = await sub.next_msg(timeout=10)
            await sub.unsubscribe()
            await publish(settings, later)
            # No wall-clock move (idle close) while the message is away: the figures then depend
            # on the set of events only, not on when it comes back.
            await asyncio.to_thread(sup.start_service, s.METRICS, ALERT_TIMING_IDLE_CLOSE_AFTER_S="3600")
            for _ in range(1000):
                info = await consumer(settings)
                if not info.num_pending and info.num_ack_pending == 1:
                    break
                await asyncio.sleep(0.05)
            assert info.num_ack_pending == 1 and not info.num_pending, info
            assert info.delivered.stream_seq > held.metadata.sequence.stream  # later ones applied
            exit_code = await asyncio.to_thread(sup.signal_service, key, signal.SIGTERM)
            assert exit_code == 0  # drained: a snapshot
            await held.nak()
            return held.metadata.sequence.stream
        finally:
            await nc.close()

    seq = asyncio.run(leave_one_unacked())
    written = wait_for_line(log, "metrics snapshot written")[-1]  # the drain's
    proc = sup.restart_service(key)
    wait_for_line(log, "metrics state rebuilt", count=2, proc=proc)
    asyncio.run(settled(settings))

    _, _, records, reference_records = asyncio.run(reports_and_reference(settings))
    twice = {k: len(v) for k, v in records.items() if len(v) > 1}
    assert not twice, f"revision numbers issued with different content: {twice}"
    assert {d for d, _ in reference_records} == {e.delivery_id for e in expected + later[:40]}
    assert {k: next(iter(v)) for k, v in records.items()} == reference_records
    assert written["stream_seq"] < seq <= written["applied_seq"]

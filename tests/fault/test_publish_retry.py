"""A transient publish failure (outputs not acknowledged in time: the broker restarting, a
stream leader moving) on a real nats-server, with a stateful handler like the metrics core:
the batch is handled once, its outputs are published again in place until stored, the inputs
are acked after that, in order. Handing the batch back instead (the former policy) made the
stateful handler see it a second time, treat it as a duplicate and publish nothing: its
outputs were lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from alert_timing.nats_server import EmbeddedNats
from services.runtime.service import Binding, Emitter, Inbound, Service
from shared import bus
from shared import subjects as s
from shared.settings import Settings
from tests.harness.jetstream import collect, settled

pytestmark = [pytest.mark.integration]

STAGE = "retry-test"


async def test_outputs_survive_a_transient_publish_failure(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "jetstream") as server:
        settings = Settings(nats_url=server.url, data_dir=str(tmp_path / "data"), publish_ack_timeout_s=1.0)
        nc = await bus.connect(settings, "test")
        js = nc.jetstream(timeout=10)
        await bus.bootstrap(js, settings)
        spec = bus.ConsumerSpec(s.STREAM_IN, STAGE, (s.IN_CSP_CENTRAL,), STAGE)
        await js.add_consumer(s.STREAM_IN, bus.consumer_config(spec))  # the product's durable config
        # The outputs' stream is gone for a while (a stream without a leader answers no one):
        # every publish of the batch fails until it is back.
        events = next(c for c in bus.stream_configs(settings) if c.name == s.STREAM_EVENTS)
        await js.delete_stream(s.STREAM_EVENTS)

        seen: set[int] = set()  # a stateful stage: what it has seen once, it never emits again
        calls: list[list[int]] = []

        def handle(batch: list[Inbound], out: Emitter) -> None:
            calls.append([m.stream_seq for m in batch])
            for m in batch:
                if m.stream_seq in seen:
                    continue
                seen.add(m.stream_seq)
                out.single(s.rejected(STAGE), m.data, f"out:{m.stream_seq}")

        attempts = await nc.subscribe(s.rejected(STAGE))
        service = Service(STAGE, settings, [Binding(spec, handle)])
        await service.app.start()
        try:
            sent = [msgspec.json.encode({"n": i}) for i in range(20)]
            futures = [await js.publish_async(s.IN_CSP_CENTRAL, data) for data in sent]
            await asyncio.gather(*futures)
            # The request that ends an attempt (an atomic batch's commit, or a message of its
            # own) seen on the wire: no stream stored it, so the attempt fails (not acknowledged).
            while True:
                m = await attempts.next_msg(timeout=30)
                if not m.headers or "Nats-Batch-Commit" in m.headers or "Nats-Batch-Id" not in m.headers:
                    break
            await js.add_stream(events)
            got = await collect(js, s.STREAM_EVENTS, [s.rejected(STAGE)], lambda m: len(m) >= len(sent), timeout=30)
            assert sorted(m.data for m in got) == sorted(sent)  # every output stored, once
            assert service.counters["retried"] > 0
            handled = [seq for call in calls for seq in call]
            assert len(handled) == len(set(handled)) == len(sent)  # each input handled exactly once
            await settled(js, s.STREAM_IN, STAGE, timeout=10)
            info = await js.consumer_info(s.STREAM_IN, STAGE)
            assert info.ack_floor.stream_seq == info.delivered.stream_seq  # acked in order, none above the floor
        finally:
            service.stopping = True
            await service.dead_letters.stop()
            await service.app.stop()
            await nc.close()

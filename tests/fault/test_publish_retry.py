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
from services.runtime import service as runtime_service
from services.runtime.service import Binding, Emitter, Inbound, Service
from shared import bus
from shared import subjects as s
from shared.settings import Settings
from tests.harness.jetstream import collect

pytestmark = [pytest.mark.integration]

STAGE = "retry-test"


async def test_outputs_survive_a_transient_publish_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_publish_all = bus.publish_all
    failures = {"left": 2}

    async def flaky_publish_all(js, messages, timeout):  # type: ignore[no-untyped-def]
        """bus.publish_all, failing the first two publishes of the stage's outputs."""
        if failures["left"] and any(m.subject == s.rejected(STAGE) for m in messages):
            failures["left"] -= 1
            try:
                raise TimeoutError("not acknowledged")
            except TimeoutError as exc:
                raise bus.PublishError("publishes not acknowledged within 0s") from exc
        return await real_publish_all(js, messages, timeout)  # where each was stored

    monkeypatch.setattr(runtime_service.bus, "publish_all", flaky_publish_all)
    monkeypatch.setattr(runtime_service, "RETRY_MAX_DELAY_S", 0.2)
    with EmbeddedNats(tmp_path / "jetstream") as server:
        settings = Settings(nats_url=server.url, data_dir=str(tmp_path / "data"))
        nc = await bus.connect(settings, "test")
        js = nc.jetstream(timeout=10)
        await bus.bootstrap(js, settings)
        spec = bus.ConsumerSpec(s.STREAM_IN, STAGE, (s.IN_CSP_CENTRAL,), STAGE)
        await js.add_consumer(s.STREAM_IN, bus.consumer_config(spec))  # the product's durable config

        seen: set[int] = set()  # a stateful stage: what it has seen once, it never emits again
        calls: list[list[int]] = []

        def handle(batch: list[Inbound], out: Emitter) -> None:
            calls.append([m.stream_seq for m in batch])
            for m in batch:
                if m.stream_seq in seen:
                    continue
                seen.add(m.stream_seq)
                out.single(s.rejected(STAGE), m.data, f"out:{m.stream_seq}")

        service = Service(STAGE, settings, [Binding(spec, handle)])
        await service.app.start()
        try:
            sent = [msgspec.json.encode({"n": i}) for i in range(20)]
            futures = [await js.publish_async(s.IN_CSP_CENTRAL, data) for data in sent]
            await asyncio.gather(*futures)
            got = await collect(js, s.STREAM_EVENTS, [s.rejected(STAGE)], lambda m: len(m) >= len(sent), timeout=30)
            assert sorted(m.data for m in got) == sorted(sent)  # every output stored, once
            assert failures["left"] == 0 and service.counters["retried"] > 0
            handled = [seq for call in calls for seq in call]
            assert len(handled) == len(set(handled)) == len(sent)  # each input handled exactly once
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                info = await js.consumer_info(s.STREAM_IN, STAGE)
                if info.num_ack_pending == 0 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert info.num_ack_pending == 0 and info.num_pending == 0
            assert info.ack_floor.stream_seq == info.delivered.stream_seq  # acked in order, none above the floor
        finally:
            service.stopping = True
            await service.dead_letters.stop()
            await service.app.stop()
            await nc.close()

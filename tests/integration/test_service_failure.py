"""A service that cannot go on stops with status 1 (its supervisor starts it again), never
sits idle: a stateful batch whose outputs cannot be made after the handler took it is neither
acked nor handled again message by message (that would find its events applied and make
nothing), and a consumer loop that ends while the service runs is a crash. Real nats-server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from nats.js import api

from alert_timing.nats_server import EmbeddedNats
from services.runtime.service import Binding, Emitter, Inbound, Service
from shared import bus
from shared import subjects as s
from shared.settings import Settings

pytestmark = [pytest.mark.integration]

STAGE = "failure-test"


class Escapes(BaseException):
    """Not an Exception: it ends the consumer loop that meets it."""


async def run_until_failed(tmp_path: Path, handle, stateful: bool) -> tuple[int, list[list[int]], api.ConsumerInfo]:  # type: ignore[no-untyped-def]
    calls: list[list[int]] = []

    def recorded(batch: list[Inbound], out: Emitter) -> None:
        calls.append([m.stream_seq for m in batch])
        handle(batch, out)

    with EmbeddedNats(tmp_path / "jetstream") as server:
        settings = Settings(nats_url=server.url, data_dir=str(tmp_path / "data"), drain_timeout_s=5.0)
        nc = await bus.connect(settings, "test")
        try:
            js = nc.jetstream(timeout=10)
            await bus.bootstrap(js, settings)
            spec = bus.ConsumerSpec(s.STREAM_IN, STAGE, (s.IN_CSP_CENTRAL,), STAGE)
            await js.add_consumer(s.STREAM_IN, bus.consumer_config(spec))  # the product's durable config
            for i in range(10):
                await js.publish(s.IN_CSP_CENTRAL, msgspec.json.encode({"n": i}))
            service = Service(STAGE, settings, [Binding(spec, recorded, stateful=stateful)])
            code = await asyncio.wait_for(service.run(), 60)
            info = await js.consumer_info(s.STREAM_IN, STAGE)
        finally:
            await nc.close()
    return code, calls, info


async def test_a_stateful_batch_whose_outputs_fail_is_not_acked_and_stops_the_service(tmp_path: Path) -> None:
    def handle(batch: list[Inbound], out: Emitter) -> None:
        raise RuntimeError("outputs cannot be made")

    code, calls, info = await run_until_failed(tmp_path, handle, stateful=True)
    assert code == 1
    assert len(calls) == 1 and len(calls[0]) == 10  # the batch once, never message by message
    assert info.ack_floor.stream_seq == 0 and info.num_ack_pending + info.num_pending == 10


async def test_a_consumer_loop_that_ends_stops_the_service(tmp_path: Path) -> None:
    def handle(batch: list[Inbound], out: Emitter) -> None:
        raise Escapes

    code, calls, info = await run_until_failed(tmp_path, handle, stateful=False)
    assert code == 1
    assert len(calls) == 1
    assert info.ack_floor.stream_seq == 0

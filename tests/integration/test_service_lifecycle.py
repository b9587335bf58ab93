"""The FastStream app is the service's lifecycle: stopping it (``app.stop()``, as a host that
embeds the app does) stops every task the service started, the dead-letter reader included,
not only ``Service.run`` on SIGTERM. Real nats-server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alert_timing.nats_server import EmbeddedNats
from services.runtime.service import Binding, Emitter, Inbound, Service
from shared import bus
from shared import subjects as s
from shared.settings import Settings

pytestmark = [pytest.mark.integration]

STAGE = "lifecycle-test"


def nothing(batch: list[Inbound], out: Emitter) -> None:
    return None


async def test_stopping_the_app_stops_every_task_the_service_started(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "jetstream") as server:
        settings = Settings(nats_url=server.url, data_dir=str(tmp_path / "data"), drain_timeout_s=5.0)
        nc = await bus.connect(settings, "test")
        try:
            js = nc.jetstream(timeout=10)
            await bus.bootstrap(js, settings)
            spec = bus.ConsumerSpec(s.STREAM_IN, STAGE, (s.IN_CSP_CENTRAL,), STAGE)
            await js.add_consumer(s.STREAM_IN, bus.consumer_config(spec))
            service = Service(STAGE, settings, [Binding(spec, nothing)])
            before = asyncio.all_tasks()
            await asyncio.wait_for(service.app.start(), 30)
            started = asyncio.all_tasks() - before
            assert started, "the service started no task"
            await asyncio.wait_for(service.app.stop(), 30)
            left = sorted(repr(t.get_coro()) for t in started if not t.done())
            assert left == []
        finally:
            await nc.close()

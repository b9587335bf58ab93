"""The metrics service's background tasks live and die with it: started after its consumers,
cancelled when it stops (a real nats-server, the service in process)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from alert_timing.nats_server import EmbeddedNats
from alert_timing.supervisor import bootstrap
from services.metrics import app as metrics_app
from shared.settings import load


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "jetstream") as srv:
        yield srv


@pytest.mark.integration
async def test_stopping_the_service_ends_its_background_tasks(server: EmbeddedNats, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    settings = load(nats_url=server.url, data_dir=str(tmp_path / "data"), delivery_url=f"file://{landing}")
    await bootstrap(settings)
    before = asyncio.all_tasks()
    service = metrics_app.build(settings)
    await service.app.start()
    started = asyncio.all_tasks() - before
    assert started, "the service runs tasks of its own (consumer loops, wall clock, delivery)"
    await service.app.stop()
    left = [task.get_name() for task in started if not task.done()]
    service.tracing.shutdown()
    service.metrics.shutdown()
    for task in started:
        task.cancel()
    assert left == []

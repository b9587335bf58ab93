"""A real nats-server per test session (free loopback port, temporary store) and the four
services as separate processes against it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
import pytest_asyncio

from alert_timing.nats_server import EmbeddedNats
from alert_timing.supervisor import Supervisor, run_bootstrap
from shared.settings import load


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory):
    server = EmbeddedNats(tmp_path_factory.mktemp("jetstream"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pipeline(nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("data")
    settings = load(nats_url=nats_server.url, data_dir=str(data_dir))
    run_bootstrap(settings)
    sup = Supervisor(settings, data_dir, nats_server.url)
    sup.start_services()
    yield sup
    dead = sup.check()
    sup.stop()
    assert not dead, f"services died during the tests: {dead}"


@pytest_asyncio.fixture
async def js(nats_server: EmbeddedNats) -> AsyncIterator:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream(timeout=10)
    await nc.close()

"""A real nats-server per test session (free loopback port, temporary store) and the four
services as separate processes against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
import pytest_asyncio

from alert_timing.nats_server import EmbeddedNats
from alert_timing.supervisor import Supervisor, run_bootstrap
from shared.settings import Settings, load


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


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[tuple[Settings, Path]]:
    """A pipeline of its own: a nats-server and the four services as processes, bootstrapped;
    the test's settings and data directory."""
    data_dir = tmp_path / "data"
    base = load(data_dir=str(data_dir))
    sup = Supervisor(base, data_dir, None, extra_env={"ALERT_TIMING_LOG_LEVEL": "WARNING"})
    try:
        url = sup.start_server()
        settings = load(nats_url=url, data_dir=str(data_dir))
        run_bootstrap(settings)
        sup.start_services()
        yield settings, data_dir
        assert not sup.check(), "services died"
    finally:
        sup.stop()

"""A real nats-server per test session (free loopback port, temporary store) and the four
services as separate processes against it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import nats
import pytest
import pytest_asyncio
from nats.js import api

from alert_timing.supervisor import Supervisor, run_bootstrap
from shared import bus
from shared import subjects as s
from shared.settings import Settings, load


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory):
    server = bus.EmbeddedNats(tmp_path_factory.mktemp("jetstream"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pipeline(nats_server: bus.EmbeddedNats, tmp_path_factory: pytest.TempPathFactory):
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
async def js(nats_server: bus.EmbeddedNats) -> AsyncIterator:
    nc = await nats.connect(nats_server.url)
    yield nc.jetstream(timeout=10)
    await nc.close()


async def send(js, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
    await js.publish(subject, data, headers=headers)


async def collect(js, stream: str, subjects: list[str], until: Callable[[list], bool],
                  timeout: float = 30.0, start_seq: int = 1) -> list:
    """Messages of ``stream`` matching ``subjects`` (from the start) until ``until(messages)``."""
    sub = await js.pull_subscribe("", stream=stream, config=api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start_seq, filter_subjects=subjects, inactive_threshold=30.0, mem_storage=True))
    got: list = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while loop.time() < deadline:
            try:
                got.extend(await sub.fetch(500, timeout=0.3))
            except (TimeoutError, nats.errors.TimeoutError):
                pass
            if until(got):
                return got
        return got
    finally:
        await sub.unsubscribe()


def decoded(msgs: list) -> list[dict]:
    return [msgspec.json.decode(m.data) for m in msgs]


__all__ = ["collect", "decoded", "send", "s", "Settings", "Path"]

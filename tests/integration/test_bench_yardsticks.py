"""The bench's yardsticks on a real nats-server: every alert through, distinct, and their CPU."""

from __future__ import annotations

import asyncio

import nats

from alert_timing.nats_server import EmbeddedNats
from alert_timing_benchmarks import relays


def _streams(url: str) -> set[str]:
    async def names() -> set[str]:
        nc = await nats.connect(url)
        try:
            return {i.config.name for i in await nc.jetstream().streams_info()}
        finally:
            await nc.close()
    return asyncio.run(names())


def test_bare_relay_passes_every_alert_and_leaves_its_stream_behind(nats_server: EmbeddedNats) -> None:
    run = asyncio.run(relays.limit(nats_server.url, 500))
    assert run.alerts_per_s > 0 and run.cpu_us_per_alert > 0
    assert relays.RELAY_STREAM not in _streams(nats_server.url)


def test_contract_floor_passes_every_alert_through_four_subjects(nats_server: EmbeddedNats) -> None:
    run = asyncio.run(relays.floor(nats_server.url, 2500))  # more than one publish batch
    assert run.alerts_per_s > 0 and run.cpu_us_per_alert > 0
    assert not set(relays.FLOOR_STREAMS) & _streams(nats_server.url)

"""Durables are pushed to the services (a deliver group per durable, replicas share it), and a
store made by a release that pulled is carried over by the bootstrap: acked stays acked, the
rest comes again. Real nats-server."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import msgspec
import pytest
from nats.js import api

from alert_timing.nats_server import EmbeddedNats, free_port
from services.runtime.service import Binding, Emitter, Inbound, Service
from shared import bus
from shared import subjects as s
from shared.settings import Settings

pytestmark = [pytest.mark.integration]


async def test_a_pulled_durable_is_recreated_pushed_from_its_ack_floor(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "jetstream") as server:
        settings = Settings(nats_url=server.url, data_dir=str(tmp_path / "data"))
        nc = await bus.connect(settings, "test")
        try:
            js = nc.jetstream(timeout=10)
            await bus.bootstrap(js, settings)
            spec = bus.consumer_spec("hub-capture")
            # As an earlier release made it: pulled, no deliver subject.
            await js.delete_consumer(spec.stream, spec.durable)
            await js.add_consumer(spec.stream, api.ConsumerConfig(
                durable_name=spec.durable, name=spec.durable, ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL, ack_wait=spec.ack_wait_s, max_deliver=spec.max_deliver,
                filter_subjects=list(spec.filter_subjects)))
            for i in range(10):
                await js.publish(s.IN_CSP_NORTH, msgspec.json.encode({"n": i}))
            sub = await js.pull_subscribe_bind(spec.durable, spec.stream)
            msgs = await sub.fetch(6, timeout=10)
            for m in msgs[:4]:
                await m.ack_sync()  # 1-4 acked; 5 and 6 delivered, never acked; 7-10 never delivered
            await sub.unsubscribe()

            done = await bus.bootstrap(js, settings)
            assert f"consumer {spec.stream}/{spec.durable} recreated for push delivery from sequence 5" in done
            info = await js.consumer_info(spec.stream, spec.durable)
            assert info.config.deliver_subject == spec.deliver_subject
            assert info.config.deliver_group == spec.durable
            assert info.config.max_ack_pending == spec.max_ack_pending
            assert info.ack_floor.stream_seq == 4 and info.num_pending == 6

            again = await bus.bootstrap(js, settings)  # a second bootstrap updates it in place
            assert f"consumer {spec.stream}/{spec.durable}" in again
            after = await js.consumer_info(spec.stream, spec.durable)
            assert after.created == info.created and after.num_pending == 6
        finally:
            await nc.close()


async def test_replicas_share_a_durable_and_each_message_is_handled_once(tmp_path: Path) -> None:
    stage = "push-test"
    with EmbeddedNats(tmp_path / "jetstream") as server:
        settings = Settings(nats_url=server.url, data_dir=str(tmp_path / "data"), batch_size=16)
        nc = await bus.connect(settings, "test")
        js = nc.jetstream(timeout=10)
        await bus.bootstrap(js, settings)
        spec = bus.ConsumerSpec(s.STREAM_IN, stage, (s.IN_CSP_CENTRAL,), stage, max_ack_pending=8)
        await js.add_consumer(s.STREAM_IN, bus.consumer_config(spec))
        handled: list[list[int]] = [[], []]

        def handler(k: int):  # type: ignore[no-untyped-def]
            def handle(batch: list[Inbound], out: Emitter) -> None:
                assert len(batch) <= 4  # half the durable's max_ack_pending
                handled[k].extend(m.stream_seq for m in batch)
            return handle

        replicas = [Service(stage, settings, [Binding(spec, handler(k))]) for k in range(2)]
        for r in replicas:
            await r.app.start()
        try:
            acks = await asyncio.gather(*[await js.publish_async(s.IN_CSP_CENTRAL, msgspec.json.encode({"n": i}))
                                          for i in range(200)])
            for _ in range(600):
                info = await js.consumer_info(s.STREAM_IN, stage)
                if info.ack_floor.stream_seq == acks[-1].seq:
                    break
                await asyncio.sleep(0.05)
            assert info.ack_floor.stream_seq == acks[-1].seq and info.num_ack_pending == 0
            assert sorted(handled[0] + handled[1]) == [a.seq for a in acks]  # each once, by one replica
        finally:
            for r in replicas:
                await r.app.stop()  # its shutdown hook drains the consumer
            await nc.close()


def _in_msgs(monitor: int, name: str) -> int:
    """Messages the server has received from the connection called ``name`` (its monitoring
    endpoint, /connz)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/connz?limit=1024", timeout=5) as r:
        conns = json.load(r)["connections"]
    [conn] = [c for c in conns if c.get("name") == name]  # the service's one connection
    return int(conn["in_msgs"])


async def test_an_idle_service_sends_nothing(tmp_path: Path) -> None:
    """Idle, a service waits for deliveries: no pull requests, no polling. (It pulled before:
    an empty 20 ms fetch after another, about 50 requests a second per durable.)"""
    stage = "idle-test"
    monitor = free_port()
    with EmbeddedNats(tmp_path / "jetstream", extra_args=["-m", str(monitor)]) as server:
        settings = Settings(nats_url=server.url, data_dir=str(tmp_path / "data"))
        nc = await bus.connect(settings, "test")
        js = nc.jetstream(timeout=10)
        await bus.bootstrap(js, settings)
        spec = bus.ConsumerSpec(s.STREAM_IN, stage, (s.IN_CSP_CENTRAL,), stage)
        await js.add_consumer(s.STREAM_IN, bus.consumer_config(spec))
        handled: list[int] = []
        service = Service(stage, settings, [Binding(spec, lambda batch, out: handled.extend(
            m.stream_seq for m in batch))])
        await service.app.start()
        try:
            ack = await js.publish(s.IN_CSP_CENTRAL, b'{"n": 1}')
            for _ in range(200):  # one message handled and acked: the service is up and idle
                info = await js.consumer_info(s.STREAM_IN, stage)
                if info.ack_floor.stream_seq == ack.seq:
                    break
                await asyncio.sleep(0.05)
            assert handled == [ack.seq] and info.ack_floor.stream_seq == ack.seq
            before = await asyncio.to_thread(_in_msgs, monitor, stage)
            await asyncio.sleep(2.0)  # the window watched, not a wait for anything
            after = await asyncio.to_thread(_in_msgs, monitor, stage)
            assert after - before == 0
        finally:
            await service.app.stop()
            await nc.close()

"""Dead letters on a real nats-server: a message a handler can never take is redelivered
``max_deliver`` times, then copied whole to ``ast.dead-letter.<stage>`` (once, whatever the
number of replicas), counted, and its batch-mates go through.

The service is a test double built here from ``services.runtime.Service`` with a handler that
raises for one poison message; its durable is the test's own (max_deliver 3)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import msgspec
import nats.errors
import pytest
from nats.js import api

from alert_timing.nats_server import EmbeddedNats
from services.runtime import service as runtime_service
from services.runtime.deadletter import REASON, DeadLetters, advisory_subject, dead_letter_id
from services.runtime.service import Binding, Emitter, Inbound, Service
from shared import bus
from shared import subjects as s
from shared.settings import Settings
from tests.harness.jetstream import collect, settled

pytestmark = [pytest.mark.integration]

STAGE = "poison-test"
MAX_DELIVER = 3


async def add_deadletter_durable(js, stage: str, durables: list[tuple[str, str]]) -> None:  # type: ignore[no-untyped-def]
    """What the bootstrap does for the product's services (shared.bus.deadletter_specs)."""
    await js.add_consumer(s.STREAM_ADVISORIES, api.ConsumerConfig(
        durable_name=bus.deadletter_durable(stage), name=bus.deadletter_durable(stage),
        ack_policy=api.AckPolicy.EXPLICIT, deliver_policy=api.DeliverPolicy.ALL,
        filter_subjects=[advisory_subject(st, d) for st, d in durables]))


async def test_an_advisory_sent_while_no_copier_ran_is_still_copied(tmp_path: Path) -> None:
    """The max-deliveries advisory is kept by AST_ADVISORIES: a copier started after the
    message was given up on still finds it, copies it once, and acks the advisory."""
    with EmbeddedNats(tmp_path / "jetstream") as server:
        settings = Settings(nats_url=server.url, data_dir=str(tmp_path / "data"))
        nc = await bus.connect(settings, "test")
        js = nc.jetstream(timeout=10)
        await bus.bootstrap(js, settings)
        durable = "late-test"
        await js.add_consumer(s.STREAM_IN, api.ConsumerConfig(
            durable_name=durable, name=durable, ack_policy=api.AckPolicy.EXPLICIT, max_deliver=2,
            ack_wait=10.0, filter_subjects=[s.IN_CSP_CENTRAL]))
        await add_deadletter_durable(js, durable, [(s.STREAM_IN, durable)])
        poison = b'{"never": "acknowledged"}'
        ack = await js.publish(s.IN_CSP_CENTRAL, poison, headers={"X-Kept": "yes"})
        sub = await js.pull_subscribe_bind(durable, s.STREAM_IN)
        for _ in range(2):  # delivered max_deliver times, refused each time: no copier is running
            [msg] = await sub.fetch(1, timeout=10)
            await msg.nak()
        with pytest.raises(nats.errors.TimeoutError):  # the server gives up on it (the advisory)
            await sub.fetch(1, timeout=2)
        kept = await collect(js, s.STREAM_ADVISORIES, [f"{s.ADVISORY_MAX_DELIVERIES}.>"],
                             lambda got: len(got) >= 1, timeout=30)
        assert [msgspec.json.decode(m.data)["stream_seq"] for m in kept] == [ack.seq]

        watcher = DeadLetters(durable, [(s.STREAM_IN, durable)], timeout=5)
        await watcher.start(nc)  # now a copier starts
        try:
            msgs = await collect(js, s.STREAM_EVENTS, [s.dead_letter(durable)], lambda got: len(got) >= 1,
                                 timeout=30)
            [dead] = [msgspec.json.decode(m.data) for m in msgs]
            assert base64.b64decode(dead["raw"]) == poison and dead["source_seq"] == ack.seq
            assert dead["headers"]["X-Kept"] == "yes"
            # the advisory is acked once its copy is stored and counted
            await settled(js, s.STREAM_ADVISORIES, bus.deadletter_durable(durable))
            assert watcher.count == 1
        finally:
            await watcher.stop()
            await nc.close()


async def test_poison_message_is_dead_lettered_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_service, "RETRY_DELAY_S", 0.1)  # NAK delay 0.5 s: max_deliver reached in seconds
    with EmbeddedNats(tmp_path / "jetstream") as server:
        settings = Settings(nats_url=server.url, data_dir=str(tmp_path / "data"))
        nc = await bus.connect(settings, "test")
        js = nc.jetstream(timeout=10)
        await bus.bootstrap(js, settings)
        # the product's durable config (shared.bus.consumer_config), delivered max_deliver times
        spec = bus.ConsumerSpec(s.STREAM_IN, STAGE, (s.IN_CSP_SOUTH,), STAGE, ack_wait_s=10.0, max_deliver=MAX_DELIVER)
        await js.add_consumer(s.STREAM_IN, bus.consumer_config(spec))
        await add_deadletter_durable(js, STAGE, [(s.STREAM_IN, STAGE)])

        handled: list[bytes] = []
        attempts: list[int] = []

        def handle(batch: list[Inbound], out: Emitter) -> None:
            for m in batch:
                if b"poison" in m.data:
                    attempts.append(m.stream_seq)
                    raise RuntimeError("this handler cannot take that message")
            handled.extend(m.data for m in batch)

        service = Service(STAGE, settings, [Binding(spec, handle)])
        await service.app.start()
        try:
            poison = b'{"poison": true, "bytes": "\\u00e9 kept as sent"}'
            headers = {"Dsp-Received-Timestamp": "20230601101502.500", "X-Trace": "abc"}
            good = [b'{"good": 1}', b'{"good": 2}']
            # One batch: a good message, the poison, another good one.
            futures = [await js.publish_async(s.IN_CSP_SOUTH, good[0]),
                       await js.publish_async(s.IN_CSP_SOUTH, poison, headers=headers),
                       await js.publish_async(s.IN_CSP_SOUTH, good[1])]
            acks = await asyncio.gather(*futures)
            poison_seq = acks[1].seq

            msgs = await collect(js, s.STREAM_EVENTS, [s.dead_letter(STAGE)], lambda got: len(got) >= 1, timeout=60)
            assert len(msgs) == 1, "no dead letter"
            assert msgs[0].headers["Nats-Msg-Id"] == dead_letter_id(s.STREAM_IN, poison_seq)
            dead = msgspec.json.decode(msgs[0].data)
            assert dead["reason"] == REASON and dead["stage"] == STAGE
            assert base64.b64decode(dead["raw"]) == poison  # whole, byte for byte
            assert dead["subject"] == s.IN_CSP_SOUTH and dead["source_seq"] == poison_seq
            assert {k: v for k, v in dead["headers"].items() if k in headers} == headers
            assert str(MAX_DELIVER) in dead["message"]
            # every delivery tried it (the first one twice: in its batch, then alone)
            assert set(attempts) == {poison_seq} and len(attempts) == MAX_DELIVER + 1
            assert sorted(handled) == sorted(good)  # its batch-mates went through
            # The copy is stored before it is counted: counted once the advisory is acked.
            await settled(js, s.STREAM_ADVISORIES, bus.deadletter_durable(STAGE))
            assert service.counters["dead_lettered"] == 1

            # A second replica seeing the same advisory publishes the same copy: JetStream keeps one.
            await service.dead_letters.copy(s.STREAM_IN, STAGE, poison_seq, MAX_DELIVER)
            again = await collect(js, s.STREAM_EVENTS, [s.dead_letter(STAGE)], lambda got: False, timeout=1.5)
            assert len(again) == 1

            info = await js.consumer_info(s.STREAM_IN, STAGE)
            assert info.num_ack_pending == 0 and info.num_pending == 0
        finally:
            service.stopping = True
            await service.dead_letters.stop()
            await service.app.stop()
            await nc.close()

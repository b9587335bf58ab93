"""Outputs published as atomic batches against a real nats-server: each message lands where the
publisher says, a redelivered batch (ids already stored: refused whole by JetStream) finds the
copies stored first, and a stream without ``allow_atomic`` still gets every message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from alert_timing.nats_server import EmbeddedNats
from shared import subjects as s
from shared.batching import MAX_BATCH, BatchPublisher
from shared.bus import Outgoing

pytestmark = [pytest.mark.integration]


@pytest.fixture
async def publisher(tmp_path: Path) -> AsyncIterator[BatchPublisher]:
    with EmbeddedNats(tmp_path / "jetstream") as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            for name in (s.STREAM_EVENTS, s.STREAM_OUT):
                await js.add_stream(name=name, subjects=s.STREAM_SUBJECTS[name], allow_atomic=True,
                                    allow_direct=True)
            yield BatchPublisher(nc, js)
        finally:
            await nc.close()


def outputs(first: int, n: int) -> list[Outgoing]:
    """Envelopes and records interleaved, as dsp-mapping and metrics emit them."""
    return [Outgoing(s.DELIVER if i % 3 else s.RECORD, b'{"n":%d}' % i, f"out-{i}") for i in range(first, first + n)]


async def assert_stored_where_said(p: BatchPublisher, out: list[Outgoing], where: list[tuple[str, int]]) -> None:
    assert len(where) == len(out)
    for m, (stream, seq) in zip(out, where, strict=True):
        stored = await p.js.get_msg(stream, seq)
        assert (stored.subject, stored.data, stored.headers["Nats-Msg-Id"]) == (m.subject, m.payload, m.msg_id)


async def messages(p: BatchPublisher) -> int:
    return sum([(await p.js.stream_info(n)).state.messages for n in (s.STREAM_EVENTS, s.STREAM_OUT)])


async def test_each_output_is_stored_once_where_the_publisher_says(publisher: BatchPublisher) -> None:
    out = outputs(0, 2 * MAX_BATCH + 100)
    where = await publisher.publish(out, 5.0, "dsp-mapping.1-900")
    await assert_stored_where_said(publisher, out, where)
    assert publisher.counters == {"batches": 3, "fallbacks": 0}  # 733 envelopes in 2 batches, 367 records in 1
    assert await messages(publisher) == len(out)
    stored = await publisher.js.get_msg(s.STREAM_OUT, where[0][1])
    assert stored.headers["Nats-Batch-Id"] == f"dsp-mapping.1-900.{s.STREAM_OUT}.0"


async def test_a_redelivered_batch_finds_the_copies_stored_first(publisher: BatchPublisher) -> None:
    out = outputs(0, 300)
    first = await publisher.publish(out, 5.0, "dsp-mapping.1-300")
    again = await publisher.publish(out, 5.0, "dsp-mapping.1-300")
    assert again == first
    assert publisher.counters == {"batches": 2, "fallbacks": 2}
    # Redelivered in another grouping: half already stored, half new.
    more = outputs(150, 300)
    where = await publisher.publish(more, 5.0, "dsp-mapping.151-450")
    assert where[:150] == first[150:]
    await assert_stored_where_said(publisher, more, where)
    assert await messages(publisher) == 450
    assert not publisher.unbatched


async def test_a_stream_without_atomic_batches_gets_every_message(publisher: BatchPublisher) -> None:
    await publisher.js.update_stream(name=s.STREAM_OUT, subjects=s.STREAM_SUBJECTS[s.STREAM_OUT],
                                     allow_atomic=False, allow_direct=True)
    out = outputs(0, 60)
    where = await publisher.publish(out, 5.0, "metrics.1-60")
    await assert_stored_where_said(publisher, out, where)
    assert publisher.unbatched == {s.STREAM_OUT}
    assert publisher.counters == {"batches": 1, "fallbacks": 1}
    where = await publisher.publish(outputs(60, 60), 5.0, "metrics.61-120")
    assert publisher.counters == {"batches": 2, "fallbacks": 1}  # not offered a batch again
    assert await messages(publisher) == 120


async def test_an_id_sent_twice_in_one_batch_is_stored_once(publisher: BatchPublisher) -> None:
    out = outputs(0, 10)
    out = [*out[:5], out[1], *out[5:], out[1]]
    where = await publisher.publish(out, 5.0, "dsp-mapping.1-10")
    assert where[5] == where[1] == where[-1]
    await assert_stored_where_said(publisher, out, where)
    assert publisher.counters == {"batches": 2, "fallbacks": 0}
    assert await messages(publisher) == 10

"""Reading the event log back: the same events, in stream order, from a sequence."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import msgspec
import nats.errors
from nats.js import JetStreamContext, api

from shared import subjects as s
from services.envelopes import decode_events
from shared.events import AnyEvent, record_decoder

FETCH = 1000


async def read_messages(js: JetStreamContext, stream: str, filter_subjects: Sequence[str],
                        first_seq: int, last_seq: int | None = None,
                        start_time: str | None = None) -> AsyncIterator[list]:
    """Raw messages of ``stream`` matching ``filter_subjects`` from ``first_seq`` (or a start
    time resolved to a sequence) up to ``last_seq`` (default: the stream's last message now)."""
    info = await js.stream_info(stream)
    end = info.state.last_seq if last_seq is None else min(last_seq, info.state.last_seq)
    if end < first_seq or info.state.messages == 0:
        return
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(first_seq, 1),
        filter_subjects=list(filter_subjects),
        inactive_threshold=30.0,
        max_ack_pending=-1,
        mem_storage=True,
    )
    sub = await js.pull_subscribe("", stream=stream, config=config)
    try:
        while True:
            try:
                msgs = await sub.fetch(FETCH, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                return  # nothing more matches before `end`
            batch = [m for m in msgs if m.metadata.sequence.stream <= end]
            if batch:
                yield batch
            if len(batch) < len(msgs) or msgs[-1].metadata.sequence.stream >= end:
                return
            if msgs[-1].metadata.num_pending == 0:
                return
    finally:
        await sub.unsubscribe()


async def read_events(js: JetStreamContext, filter_subjects: Sequence[str], first_seq: int,
                      last_seq: int | None = None) -> AsyncIterator[list[AnyEvent]]:
    """Events of the metrics inputs (envelopes unpacked, rejections as they are)."""
    async for msgs in read_messages(js, s.STREAM_EVENTS, filter_subjects, first_seq, last_seq):
        events: list[AnyEvent] = []
        for m in msgs:
            try:
                events.extend(decode_events(m.subject, m.data))
            except msgspec.DecodeError:
                continue  # the live consumer rejected it already
        yield events


__all__ = ["read_events", "read_messages", "record_decoder"]

"""The metrics inputs read back from the event log, in stream order (start-up rebuild and replay)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext

from services.runtime.envelopes import decode_events
from services.runtime.service import Emitter
from shared import bus
from shared import subjects as s
from shared.eventlog import read_messages
from shared.events import AnyEvent

__all__ = ["read_events", "republish"]


async def read_events(nc: Client, filter_subjects: Sequence[str], first_seq: int,
                      last_seq: int | None = None) -> AsyncIterator[list[AnyEvent]]:
    """Events of the metrics inputs (envelopes unpacked, rejections as they are)."""
    async for msgs in read_messages(nc, s.STREAM_EVENTS, filter_subjects, first_seq, last_seq):
        events: list[AnyEvent] = []
        for m in msgs:
            try:
                events.extend(decode_events(m.subject, m.data))
            except msgspec.DecodeError:
                continue  # the live consumer rejected it already
        yield events


async def republish(js: JetStreamContext, out: Emitter, timeout: float, trace_index: bool = True) -> int:
    """Publish what a rebuild step produced again (its ``Nats-Msg-Id`` drops what a predecessor
    stored already) and, with the trace index on, the index entries of the records, as a
    consumer batch writes them: ``trace`` then reads a re-published record by sequence too.
    Awaited (a rebuild is rare, nothing is acked meanwhile). How many messages went out."""
    messages = out.messages()
    stored = await bus.publish_all(js, messages, timeout)
    if trace_index:
        await bus.publish_all(js, out.index(s.METRICS, stored), timeout)
    return len(messages)

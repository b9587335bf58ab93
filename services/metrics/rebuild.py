"""The metrics inputs read back from the event log, in stream order (start-up rebuild and replay)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import msgspec
from nats.aio.client import Client

from services.runtime.envelopes import decode_events
from shared import subjects as s
from shared.eventlog import read_messages
from shared.events import AnyEvent, record_decoder

FETCH = 1000


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


__all__ = ["read_events", "read_messages", "record_decoder"]



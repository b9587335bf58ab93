"""Reading events off intermediate subjects: batch envelopes, and single rejections.

An unreadable envelope is rejected whole; an unreadable rejection is only logged (it is
already on a rejected subject, and rejecting it again would loop)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec
import structlog

from services.runtime.service import Emitter, Inbound
from services.runtime.validation import reject
from shared import subjects as s
from shared.events import AnyEvent, DeliveryAttempted
from shared.upcasting import reader

log = structlog.get_logger()


def decode_events(subject: str, data: bytes) -> list[AnyEvent]:
    """Today's events of one message, whatever known schema version wrote them (``shared.upcasting``).
    Raises msgspec.DecodeError when the message is not a readable event (or is at a version
    this build does not know)."""
    if subject.startswith(s.REJECTED + ".") or subject.startswith(s.DEAD_LETTER + "."):
        return [reader.rejection(data)]
    return reader.batch(data)


def events_of(batch: Iterable[Inbound], stage: str, out: Emitter) -> Iterator[tuple[Inbound, AnyEvent]]:
    for msg in batch:
        try:
            events = decode_events(msg.subject, msg.data)
        except msgspec.DecodeError as exc:
            if msg.subject.startswith(s.REJECTED + "."):
                log.warning("unreadable rejection skipped", subject=msg.subject, seq=msg.stream_seq)
                continue
            out.rejected(reject(msg, "bad_event", f"not a readable event envelope: {exc}", stage=stage))
            continue
        for event in events:
            # Where the alert's messages are, for an index entry the batch may write for it
            # (a record, a rejection): this envelope, and the delivery-log line an attempt names.
            rid = getattr(event, "response_id", None)
            if isinstance(rid, str):
                out.note(rid, s.STREAM_EVENTS, msg.stream_seq)
                if type(event) is DeliveryAttempted and event.source_seq is not None:
                    out.note(rid, s.STREAM_IN, event.source_seq)
            yield msg, event

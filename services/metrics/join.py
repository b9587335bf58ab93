"""The join and pending deliveries: expectations met with attempts, handshake deadlines, records, revisions."""

from __future__ import annotations

import heapq
from typing import Any

import msgspec

from services.metrics.clock import NEVER, Clocks
from services.metrics.compact import (
    DERIVED_FLAGS,
    compact,
    expected_from_record,
    pack,
    packed_dsp_received,
    parse_iso_ms,
    unpack,
    window_start_of,
)
from services.metrics.model import Delivery, MetricsConfig, Window
from services.metrics.records import Attempt, build_record
from services.metrics.windows import Windows
from shared.events import AstRecord, DeliveryAttempted, DeliveryExpected
from shared.timefmt import format_iso

__all__ = ["BUCKET_MS", "COMPACT_EVERY", "Join"]

#: Deadlines are kept in buckets of this many milliseconds, the bucket keys on a heap.
BUCKET_MS = 1000
#: Expectations still pending are packed to bytes after this many new ones (see ``compact``).
COMPACT_EVERY = 16_384


class Join:
    """Deliveries by id (see ``services.metrics.core``, "Join"), each held as one of four kinds
    told apart by exact type (the fastest test): a pending expectation with no attempt
    (``DeliveryExpected``, or packed into ``bytes`` once swept), a finished delivery whose
    record tells its attempts (``AstRecord``), or anything else (``Delivery``)."""

    __slots__ = ("bucket_heap", "buckets", "clocks", "compact_every", "conflicts", "deliveries", "duplicates",
                 "fresh", "next_due", "pending", "timeout", "too_late", "window_ms", "windows")

    def __init__(self, config: MetricsConfig, clocks: Clocks, windows: Windows,
                 compact_every: int = COMPACT_EVERY) -> None:
        self.compact_every = compact_every
        self.clocks = clocks
        self.windows = windows
        self.window_ms = config.window_ms
        self.timeout = config.handshake_timeout_ms
        self.deliveries: dict[str, Any] = {}
        #: Deliveries waiting for an acknowledgement or the handshake timeout.
        self.pending = 0
        #: Expectations stored as decoded since the last sweep (``compact_fresh``).
        self.fresh: list[str] = []
        #: Pending delivery ids by their deadline // BUCKET_MS.
        self.buckets: dict[int, list[str]] = {}
        #: The keys of ``buckets``, on a heap.
        self.bucket_heap: list[int] = []
        #: The watermark at which the next pending delivery times out.
        self.next_due: float = NEVER
        self.duplicates = 0
        self.conflicts = 0
        self.too_late = 0

    # ------------------------------------------------------------ inputs

    def on_expected(self, e: DeliveryExpected, out: list[AstRecord]) -> int:
        did = e.delivery_id
        deliveries = self.deliveries
        d: Any = deliveries.get(did)
        if d is None:
            deliveries[did] = e
            self.pending += 1
            self.add_deadline(did, e.dsp_received + self.timeout)
            fresh = self.fresh
            fresh.append(did)
            if len(fresh) >= self.compact_every:
                self.compact_fresh()
            return e.dsp_received
        kind = type(d)
        if kind is bytes:
            d = unpack(did, d)
            kind = DeliveryExpected
        if kind is not Delivery or d.exp is not None or d.record is not None:
            held = d if kind is not Delivery else (d.exp or d.record)
            if _same_expectation(held, e):
                self.duplicates += 1
            else:
                self.conflicts += 1
            return e.dsp_received
        # Its attempts came first: join now.
        if d.window is not None:  # it was counted as a delivery without alert
            self._drop_without_alert(did, d)
            self.pending += 1
        if any(a[2] or a[0] is None for a in d.attempts) or e.dsp_received + self.timeout <= self.clocks.watermark:
            self._resolve(did, e, d.attempts, out)
        else:
            d.exp = e
            d.flags = e.flags
            self.add_deadline(did, e.dsp_received + self.timeout)
        return e.dsp_received

    def on_attempted(self, a: DeliveryAttempted, out: list[AstRecord]) -> int | None:
        did = a.delivery_id
        passed = a.su_passed
        acked_at = a.su_acknowledged
        acked = a.outcome == "acknowledged"
        key = (passed, acked_at, acked, a.throttled_count)
        if passed is None:  # throttled: final, and no time of its own
            final = True
            t = None
        else:
            final = acked
            t = passed if acked_at is None or acked_at < passed else acked_at
        d: Any = self.deliveries.get(did)
        if d is None:  # not (yet) expected
            self._first_attempt(did, key)
            return t
        kind = type(d)
        if kind is bytes:
            d = unpack(did, d)
            kind = DeliveryExpected
        if kind is DeliveryExpected:
            if final:
                self._resolve(did, d, (key,), out)
            else:
                joined = Delivery()
                joined.exp = d
                joined.flags = d.flags
                joined.attempts = (key,)
                self.deliveries[did] = joined
            return t
        if kind is AstRecord:
            d = self._delivery_of_record(did, d)
        if key in d.attempts:
            self.duplicates += 1
            return t
        d.attempts = (*d.attempts, key)
        if d.record is not None:
            self._revise(did, d, out)
        elif d.exp is not None:
            if final:
                self._resolve(did, d.exp, d.attempts, out)
        elif d.window is not None:  # a delivery without alert, already counted
            if self._window_without_alert(d) != d.window:
                self._drop_without_alert(did, d)
                self._count_without_alert(did, d)
        else:  # a delivery without alert, pending
            at = _time_without_alert(d)
            if at is not None:
                self.add_deadline(did, at + self.timeout)
        return t

    def _first_attempt(self, did: str, key: Attempt) -> None:
        """An attempt of a delivery not (yet) expected: pending as a delivery without alert."""
        d = Delivery()
        d.attempts = (key,)
        self.deliveries[did] = d
        self.pending += 1
        if key[0] is None:
            d.at = self.clocks.arrival_time()
        at = _time_without_alert(d)
        if at is not None:
            self.add_deadline(did, at + self.timeout)

    # ------------------------------------------------------------ records

    def _resolve(self, did: str, e: DeliveryExpected, attempts: tuple[Attempt, ...],
                 out: list[AstRecord]) -> None:
        """First record of a pending expected delivery (acknowledged, or timed out)."""
        rec = build_record(e, attempts, 1, did)
        self.pending -= 1
        out.append(rec)
        if (not attempts or (len(attempts) == 1 and attempts[0][2])) and DERIVED_FLAGS.isdisjoint(e.flags):
            self.deliveries[did] = rec
        else:
            d = Delivery()
            d.flags = e.flags
            d.attempts = attempts
            d.record = rec
            self.deliveries[did] = d
        windows = self.windows
        w = windows.window_for(e.dsp_received)
        if w is None:
            # Its window is forgotten (event time ran on past the horizon first, e.g. while
            # something upstream stalled): no report revision, but the record stands and an
            # acknowledgement that comes later still revises it. It is held as long as the
            # window of the current event time.
            self.too_late += 1
            event_time = self.clocks.event_time
            hold = None if event_time is None else windows.window_for(event_time)
            if hold is None:
                del self.deliveries[did]
            else:
                hold.late.add(did)
            return
        w.records[did] = rec
        windows.touch(w)

    def _delivery_of_record(self, did: str, rec: AstRecord) -> Delivery:
        """The full state of a delivery stored as its record."""
        d = Delivery()
        d.record = rec
        d.flags = tuple(f for f in rec.flags if f not in DERIVED_FLAGS)
        if rec.delivery_attempts:
            d.attempts = ((parse_iso_ms(rec.su_passed), parse_iso_ms(rec.su_acknowledged), True, rec.throttled_count),)
        self.deliveries[did] = d
        return d

    def _revise(self, did: str, d: Delivery, out: list[AstRecord]) -> None:
        old = d.record
        assert old is not None
        e = expected_from_record(old, d.flags)
        rec = build_record(e, d.attempts, old.revision, did)
        if rec == old:
            return
        rec = msgspec.structs.replace(rec, revision=old.revision + 1)
        d.record = rec
        out.append(rec)
        w = self.windows.get(window_start_of(e.dsp_received, self.window_ms))
        if w is not None and did in w.records:
            w.records[did] = rec
            self.windows.touch(w)

    # ------------------------------------------------------------ deliveries without alert

    def _window_without_alert(self, d: Delivery) -> int:
        at = _time_without_alert(d)
        assert at is not None  # counted in a window: it has a time
        return window_start_of(at, self.window_ms)

    def _count_without_alert(self, did: str, d: Delivery) -> None:
        w = self.windows.window_for(_time_without_alert(d))  # type: ignore[arg-type]
        if w is None:
            self.too_late += 1
            del self.deliveries[did]
            return
        d.window = w.start
        w.without_alert.add(did)
        self.windows.touch(w)

    def _drop_without_alert(self, did: str, d: Delivery) -> None:
        w = None if d.window is None else self.windows.get(d.window)
        d.window = None
        if w is not None:
            w.without_alert.discard(did)
            self.windows.touch(w)

    # ------------------------------------------------------------ deadlines

    def add_deadline(self, did: str, deadline: int) -> None:
        key = deadline // BUCKET_MS
        bucket = self.buckets.get(key)
        if bucket is None:
            self.buckets[key] = [did]
            heapq.heappush(self.bucket_heap, key)
            at = key * BUCKET_MS
            if at < self.next_due:
                self.next_due = at
        else:
            bucket.append(did)
            if deadline < self.next_due:  # the partly-due bucket: exact time matters
                self.next_due = deadline

    def _deadline(self, d: Any) -> int | None:
        """Deadline of a pending delivery, None when it is not pending."""
        kind = type(d)
        if kind is DeliveryExpected:
            return d.dsp_received + self.timeout
        if kind is bytes:
            return packed_dsp_received(d) + self.timeout
        if kind is AstRecord or d.record is not None:
            return None
        if d.exp is not None:
            return d.exp.dsp_received + self.timeout
        if d.window is not None:
            return None
        at = _time_without_alert(d)
        return None if at is None else at + self.timeout

    def _pop_due(self, watermark: float) -> dict[str, int]:
        """The pending deliveries whose deadline the watermark has reached, with it."""
        due: dict[str, int] = {}
        heap = self.bucket_heap
        deliveries = self.deliveries
        timeout = self.timeout
        self.next_due = NEVER
        while heap and heap[0] * BUCKET_MS <= watermark:
            key = heapq.heappop(heap)
            keep = []
            soonest = NEVER
            for did in self.buckets.pop(key):
                d: Any = deliveries.get(did)
                kind = type(d)
                if kind is AstRecord or d is None:
                    continue  # finished (the common case) or forgotten
                deadline = d.dsp_received + timeout if kind is DeliveryExpected else self._deadline(d)
                if deadline is None or deadline // BUCKET_MS != key:
                    continue  # resolved, or it has an entry in its own bucket
                if deadline <= watermark:
                    due[did] = deadline
                else:
                    keep.append(did)
                    if deadline < soonest:
                        soonest = deadline
            if keep:
                self.buckets[key] = keep
                heapq.heappush(heap, key)
                self.next_due = soonest
                break
        if self.next_due == NEVER and heap:
            self.next_due = heap[0] * BUCKET_MS
        return due

    def time_out(self, watermark: float, records: list[AstRecord]) -> None:
        """Every pending delivery whose deadline the watermark has reached, in deadline order:
        a ``no_handshake`` record, or a delivery without alert counted in its window."""
        if watermark < self.next_due:
            return
        due = self._pop_due(watermark)
        deliveries = self.deliveries
        for did in sorted(due, key=lambda k: (due[k], k)):
            d = deliveries[did]
            if type(d) is bytes:
                d = unpack(did, d)
            if type(d) is DeliveryExpected:
                self._resolve(did, d, (), records)
            elif d.exp is not None:
                self._resolve(did, d.exp, d.attempts, records)
            else:
                self.pending -= 1
                self._count_without_alert(did, d)

    # ------------------------------------------------------------ memory

    def forget(self, w: Window) -> None:
        """The deliveries of a forgotten window."""
        deliveries = self.deliveries
        for did in w.records:
            deliveries.pop(did, None)
        for did in w.without_alert:
            deliveries.pop(did, None)
        for did in w.late:
            deliveries.pop(did, None)

    def compact_fresh(self) -> None:
        """Expectations still pending since the last sweep are packed (most were resolved
        meanwhile and cost nothing here)."""
        deliveries = self.deliveries
        for did in self.fresh:
            d: Any = deliveries.get(did)
            kind = type(d)
            if kind is DeliveryExpected:
                deliveries[did] = pack(d)
            elif kind is Delivery and d.exp is not None and d.exp.event_id:
                d.exp = compact(d.exp)
        self.fresh = []


def _time_without_alert(d: Delivery) -> int | None:
    """A delivery without alert's time: its earliest su_passed, else (throttled attempts only)
    the event time its first one arrived at."""
    return min((x[0] for x in d.attempts if x[0] is not None), default=d.at)


def _same_expectation(held: Any, e: DeliveryExpected) -> bool:
    if type(held) is DeliveryExpected:
        return (held.response_id, held.dsp_received, held.csp_sent, held.chf_received, held.csp_received,
                held.service_user_id, held.dcc_alert_code) == (
            e.response_id, e.dsp_received, e.csp_sent, e.chf_received, e.csp_received,
            e.service_user_id, e.dcc_alert_code)
    return (held.response_id, held.dsp_received, held.csp_sent, held.chf_received, held.csp_received,
            held.service_user_id, held.dcc_alert_code) == (
        e.response_id, format_iso(e.dsp_received), format_iso(e.csp_sent), format_iso(e.chf_received),
        format_iso(e.csp_received),
        e.service_user_id, e.dcc_alert_code)

"""Metrics core: join expectations with the delivery log, 15-minute windows, sketches.

Pure: no I/O, no clock of its own. ``MetricsCore.apply`` takes events in stream order and
returns what they produced: new AST records (or revisions) and closed windows (a report and
the latest revision of every record in the window). The same input order always produces
the same outputs, byte for byte once encoded, whatever the batching, so a replay of the
event log rebuilds the state and re-derives the reports.

Join (key ``delivery_id``)
    A ``DeliveryExpected`` plus an attempt with outcome ``acknowledged`` gives a record,
    status ``complete`` when csp_received, csp_sent, dsp_received, su_passed and
    su_acknowledged are all known, else ``incomplete`` (chf_received is optional: flag
    ``missing_hub_timestamp``). ``su_passed`` is the earliest attempt's, ``su_acknowledged``
    the acknowledged attempt's (several acknowledged attempts: the earliest
    acknowledgement), ``delivery_attempts`` the number of distinct attempts. Attempts are
    identified by content (su_passed, su_acknowledged, outcome), so a redelivered event,
    whatever its event_id, or a second identical acknowledgement, changes nothing.
    Expectations are identified by delivery_id: a second one is a duplicate (one with
    different content is counted as a conflict and ignored; the first one stands).

    Every change to a delivery recomputes its record from everything known about it; a
    record that differs from the last one published (status, points, attempts) is
    published again as revision n+1, an identical one is not published at all. The latest
    record is therefore a function of the set of events, not of their order.

Throttled deliveries (Alert Storm Protection)
    An attempt with outcome ``throttled`` (no su_passed, no su_acknowledged) says the DSP
    discarded the alert: it resolves its delivery at once, like an acknowledgement, with
    status ``throttled``, null SU points and SU legs, and it never times out as
    ``no_handshake``. The log line moves no clock (it has no time). Throttled is what the
    DSP said, so it stands over any other attempt of the same delivery. A throttled
    delivery is counted in its window (``alerts`` and ``throttled``) and kept out of every
    leg's statistics. ``throttled_count`` of a record is the greatest
    ``throttledAlertCount`` of its attempts (None when none carried one).

Handshake timeout
    An expected delivery with no acknowledged attempt once the watermark reaches
    ``dsp_received + handshake_timeout_ms`` gets a ``no_handshake`` record (su_passed from
    its attempts, if any). An acknowledgement arriving later revises it.

Deliveries never expected (``delivery_without_alert``)
    Attempts whose delivery_id never had a ``DeliveryExpected`` stay pending until the
    watermark reaches ``su_passed + handshake_timeout_ms``. An AST record cannot be made for
    them (region, category and the Comms Hub are unknown and the record schema requires
    them), so they produce no record: they are counted in the window of their earliest
    ``su_passed`` (throttled attempts only: of the event time when the first arrived), in
    the ``all`` row only, as ``alerts`` + ``incomplete`` +
    ``delivery_without_alert``. If the expectation turns up later they become an ordinary
    record in the window of its ``dsp_received`` and leave the count (a revised report
    when that window had closed).

Event time and watermark
    Two inputs, two clocks: the alerts' clock (the greatest dsp_received of expectations)
    and the delivery log's clock (the greatest su_passed or su_acknowledged of attempts); a
    ``ClockTick`` moves both. Both come through dsp-mapping. Service responses and rejected
    inputs are counted in their windows but move no clock: they leave the pipeline before
    dsp-mapping (csp-enrichment, or any stage's rejections), so while dsp-mapping stalls
    (paused, behind) they would run the alerts' clock ahead of alerts it has not yet mapped,
    and event time with it (through the stalled-log and quiet-stream moves below): every
    delivery of that backlog timed out, its window closed and, past ``done_horizon_ms``,
    forgotten before its expectation and acknowledgement came. Event time is the slower
    clock::

        event time = min(alerts, log)

    (attempts only: the delivery log's clock; before the delivery log has said anything:
    none yet). Alerts racing ahead of their Service Users' handshakes therefore neither time
    out the deliveries still awaiting an acknowledgement nor close their windows: a window
    closes once both inputs have moved past it, and each acknowledgement gives a first
    record in an open window rather than a revision. This holds at any speed, including
    an accelerated simulation of a day in seconds. Event time never goes back; watermark =
    event time - allowed_lateness_ms.

    Wall time enters only through a ``WallClock`` event: a live run decides it
    (``wall_clock_event``, pure), puts it in the log and applies it from there, so a
    replay makes the same move at the same point:
    - a quiet stream (no input for ``idle_close_after_s``) moves both clocks on, from the
      later one at the last input, by the wall time elapsed since then;
    - a stalled delivery log (no attempt for ``idle_close_after_s`` while alerts flow) lets
      the log's clock follow the alerts' clock ``max_log_lag_ms`` behind, so a broken log
      feed holds windows open that much longer at most; its deliveries then time out as
      ``no_handshake``, and acknowledgements arriving after that revise them.

Windows
    15 minutes (``window_ms``), aligned to the epoch (so to the quarter hour UTC), by the
    record's ``dsp_received``. Window [s, e) closes when the watermark reaches
    ``e + handshake_timeout_ms``: every delivery in it has then resolved. Every window from
    the first one that saw any event up to the watermark is reported, empty ones with zero
    counts. A change to a window already reported (a late record, a revision moving a
    record between statuses, a late service response or rejection) reports it again at
    once as revision n+1, with the latest revision of all of its records.

    Closed windows, with their records and their deliveries, are kept for
    ``done_horizon_ms`` after they close (the de-duplication horizon), then forgotten. An
    event for a window already forgotten still yields its record, but no report revision
    (counted as ``too_late`` in the stats). A silent gap longer than the horizon (event
    time jumping ahead by days) is not back-filled with empty windows beyond the horizon.

Rejected inputs are counted in the window of their ``dsp_received`` or, when they have
none, of the event time when they arrive; service responses and rejections of a known
region (the inbound CSP subject) go into that region's ``(region, "all")`` row too.

Report rows: ``("all", "all")`` first, then for each region seen ``(region, "all")`` and
``(region, category)`` for each category present. Percentiles come from DDSketch bins
(``ddsketch`` logarithmic mapping, ``sketch_relative_accuracy``); each leg carries its
bins so ``merge_reports`` rolls windows up into days and months.

Memory: a pending delivery is kept as its ``DeliveryExpected`` while fresh; expectations
still pending at the next sweep (every 16,384 new ones) are packed into one msgpack bytes
object each (~300 B with the dictionary entry and the delivery id, vs ~1.2 kB decoded). A
finished delivery is kept as its latest ``AstRecord`` (which the window needs anyway) until
its window is forgotten.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

import msgspec

from services.metrics.clock import Clocks
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
from services.metrics.model import ClosedWindow, CoreStats, Delivery, MetricsConfig, Output, Window
from services.metrics.records import Attempt, build_record
from services.metrics.reports import closed_window
from services.metrics.state import (
    STATE_VERSION,
    CoreState,
    StateError,
    decode_state,
    deliveries_from,
    delivery_entries,
    encode_state,
    window_states,
    windows_from,
)
from shared import subjects as s
from shared.events import (
    AstRecord,
    ClockTick,
    DeliveryAttempted,
    DeliveryExpected,
    RejectedInput,
    ServiceResponseSeen,
    WallClock,
)
from shared.sketches import (
    Sketcher,
    ddsketch_of,
    leg_stats_from_bins,
    merge_reports,
    sketch_quantiles,
)
from shared.timefmt import format_iso

__all__ = [
    "STATE_VERSION",
    "ClosedWindow",
    "CoreState",
    "CoreStats",
    "MetricsConfig",
    "MetricsCore",
    "Output",
    "StateError",
    "ddsketch_of",
    "export_state",
    "import_state",
    "leg_stats_from_bins",
    "merge_reports",
    "sketch_quantiles",
    "window_start_of",
]



_NEVER = float("inf")
_BUCKET_MS = 1000


class MetricsCore:
    """The join and the windows. See the module docstring for the rules."""

    def __init__(self, config: MetricsConfig | None = None) -> None:
        self.config = config = config or MetricsConfig()
        self._w = config.window_ms
        self._clocks = Clocks(config)
        self._timeout = config.handshake_timeout_ms
        self._horizon = config.done_horizon_ms
        self._sketcher = Sketcher(config.sketch_relative_accuracy)
        self._max_gap = max(config.done_horizon_ms, 86_400_000)

        # id -> DeliveryExpected | bytes (packed) while pending with no attempt; AstRecord when finished
        # and its record tells its attempts; Delivery otherwise
        self._deliveries: dict[str, Any] = {}
        self._pending = 0
        self._fresh: list[str] = []  # expectations stored as decoded, compacted in batches
        self._compact_every = 16_384
        self._buckets: dict[int, list[str]] = {}  # deadline // 1000 -> delivery ids
        self._bucket_keys: list[int] = []  # heap
        self._next_due: float = _NEVER

        self._windows: dict[int, Window] = {}
        self._first: int | None = None  # first window reported (or to be)
        self._close_ptr: int | None = None  # windows before this one are closed
        self._retain_from: float = -_NEVER  # windows before this one are forgotten
        self._dirty: set[int] = set()
        self._counted: set[str] = set()  # event ids of responses/rejections counted
        self._unplaced: list[RejectedInput] = []  # rejections before any event time

        self._next_action: float = _NEVER
        self._next_evict: float = _NEVER

        self._records_emitted = 0
        self._reports_emitted = 0
        self._duplicates = 0
        self._conflicts = 0
        self._too_late = 0
        self._ignored = 0

    # ------------------------------------------------------------------ public

    def apply(self, events: Iterable[Any]) -> Output:
        records: list[AstRecord] = []
        closed: list[ClosedWindow] = []
        on_exp, on_att = self._on_expected, self._on_attempted
        clocks = self._clocks
        seen = False
        t: int | None
        for ev in events:
            kind = type(ev)
            if kind is DeliveryExpected:
                t = on_exp(ev, records)
            elif kind is DeliveryAttempted:
                t = on_att(ev, records)
            elif kind is ClockTick:
                t = ev.time
            elif kind is ServiceResponseSeen:  # counted; moves no clock (see "Event time and watermark")
                self._on_response(ev, closed)
                t = None
            elif kind is RejectedInput:  # likewise
                self._on_rejected(ev, closed)
                t = None
            elif kind is WallClock:  # not an input: the count of quiet wall time goes on
                if seen:  # the inputs before it, as at the end of a batch (batching changes nothing)
                    clocks.mark_input()
                    seen = False
                t = self._on_wall_clock(ev)
                if t is not None:
                    clocks.move_to(t)
                if clocks.watermark >= self._next_action:
                    self._advance(records, closed)
                if self._dirty:
                    self._flush_dirty(closed)
                continue
            else:
                self._ignored += 1
                seen = True
                continue
            seen = True
            if t is not None:
                raw = t
                # Two inputs, two clocks: the alerts' (dsp_received) and the delivery log's
                # (su_passed / su_acknowledged). Event time is the slower of them, so alerts
                # racing ahead of their handshakes do not close windows under them.
                if kind is DeliveryAttempted:
                    if t > clocks.log:
                        clocks.log = t
                elif kind is ClockTick:
                    if t > clocks.log:
                        clocks.log = t
                    if t > clocks.alert:
                        clocks.alert = t
                elif t > clocks.alert:
                    clocks.alert = t
                t = clocks.slower()
                if self._first is None and raw is not None:
                    self._start(raw)  # reporting starts at the first event's own window
            if t is not None:
                et = clocks.event_time
                if et is None or t > et:  # clocks.move_to(t), inlined: this is the hot path
                    clocks.event_time = t
                    clocks.watermark = t - clocks.lateness
            if clocks.watermark >= self._next_action:
                self._advance(records, closed)
            if self._dirty:
                self._flush_dirty(closed)
        if seen:
            clocks.mark_input()
        self._records_emitted += len(records)
        self._reports_emitted += len(closed)
        return Output(records=records, closed=closed)

    def wall_clock_event(self, now_wall_ms: int, last_input_wall_ms: int,
                         last_log_wall_ms: int | None = None, partition: int = 0) -> WallClock | None:
        """The wall clock's move, as an event for the log (None: no move); see
        ``Clocks.wall_clock_event``. Pure: the state changes only when it is applied."""
        return self._clocks.wall_clock_event(now_wall_ms, last_input_wall_ms, last_log_wall_ms, partition)

    def wall_clock_due(self, event: WallClock) -> bool:
        """Whether applying ``event`` would change an output now (time out a delivery, close or
        forget a window): the only wall-clock moves worth putting in the log."""
        target = self._clocks.event_time_after(event)
        if target is None:
            return False
        return self._first is None or target - self._clocks.lateness >= self._next_action

    def on_wall_clock(self, now_wall_ms: int, last_input_wall_ms: int,
                      last_log_wall_ms: int | None = None) -> Output:
        """``wall_clock_event`` applied at once (tests and tools; the service puts the event in
        the log and applies it from there)."""
        event = self.wall_clock_event(now_wall_ms, last_input_wall_ms, last_log_wall_ms)
        return self.apply([event]) if event is not None else Output()

    def _on_wall_clock(self, e: WallClock) -> int | None:
        t = self._clocks.follow(e)
        if t is not None and self._first is None and (self._clocks.event_time is None or t > self._clocks.event_time):
            self._start(t)
        return t

    def stats(self) -> CoreStats:
        closed_ptr = self._close_ptr
        open_windows = sum(1 for s_ in self._windows if closed_ptr is None or s_ >= closed_ptr)
        if closed_ptr is not None and self._clocks.event_time is not None:
            last = window_start_of(self._clocks.event_time, self._w)
            open_windows = max(open_windows, (last - closed_ptr) // self._w + 1)
        return CoreStats(
            pending=self._pending,
            deliveries_tracked=len(self._deliveries),
            windows_open=open_windows,
            windows_retained=sum(1 for s_ in self._windows if closed_ptr is not None and s_ < closed_ptr),
            event_time=format_iso(self._clocks.event_time),
            alert_clock=format_iso(int(self._clocks.alert)) if self._clocks.alert != -_NEVER else None,
            log_clock=format_iso(int(self._clocks.log)) if self._clocks.log != -_NEVER else None,
            watermark=format_iso(int(self._clocks.watermark)) if self._clocks.event_time is not None else None,
            records_emitted=self._records_emitted,
            reports_emitted=self._reports_emitted,
            duplicates=self._duplicates,
            conflicting_expectations=self._conflicts,
            too_late=self._too_late,
            ignored=self._ignored,
        )

    snapshot = stats

    @property
    def pending(self) -> int:
        return self._pending

    def export_state(self) -> bytes:
        """The whole state as msgpack bytes (``export_state``); the core is left as it is."""
        return encode_state(CoreState(
            version=STATE_VERSION, config=self.config, deliveries=delivery_entries(self._deliveries),
            pending=self._pending,
            fresh=list(self._fresh), buckets=list(self._buckets.items()), bucket_keys=list(self._bucket_keys),
            next_due=self._next_due,
            windows=window_states(self._windows, self._deliveries), first=self._first,
            close_ptr=self._close_ptr, retain_from=self._retain_from,
            dirty=sorted(self._dirty), counted=sorted(self._counted), unplaced=list(self._unplaced),
            event_time=self._clocks.event_time, alert_clock=self._clocks.alert, log_clock=self._clocks.log,
            clocks_at_input=self._clocks.at_input, wm=self._clocks.watermark, next_action=self._next_action,
            next_evict=self._next_evict, event_time_at_input=self._clocks.event_time_at_input,
            counters=(self._records_emitted, self._reports_emitted, self._duplicates, self._conflicts,
                      self._too_late, self._ignored),
        ))

    def load_state(self, st: CoreState) -> None:
        """Take over a decoded state (``import_state``); a fresh core only."""
        self._deliveries = deliveries_from(st.deliveries)
        self._windows = windows_from(st.windows, self._deliveries)
        self._pending = st.pending
        self._fresh = list(st.fresh)
        self._buckets = {k: list(v) for k, v in st.buckets}
        self._bucket_keys = list(st.bucket_keys)
        self._next_due = st.next_due
        self._first, self._close_ptr, self._retain_from = st.first, st.close_ptr, st.retain_from
        self._dirty = set(st.dirty)
        self._counted = set(st.counted)
        self._unplaced = list(st.unplaced)
        self._clocks.event_time = st.event_time
        self._clocks.alert, self._clocks.log, self._clocks.at_input = st.alert_clock, st.log_clock, st.clocks_at_input
        self._clocks.watermark, self._next_action, self._next_evict = st.wm, st.next_action, st.next_evict
        self._clocks.event_time_at_input = st.event_time_at_input
        (self._records_emitted, self._reports_emitted, self._duplicates, self._conflicts, self._too_late,
         self._ignored) = st.counters

    # ------------------------------------------------------------ event handlers

    def _on_expected(self, e: DeliveryExpected, out: list[AstRecord]) -> int:
        did = e.delivery_id
        deliveries = self._deliveries
        # A delivery is stored as one of four kinds, told apart by exact type (the fastest test).
        d: Any = deliveries.get(did)
        if d is None:
            deliveries[did] = e
            self._pending += 1
            self._add_deadline(did, e.dsp_received + self._timeout)
            fresh = self._fresh
            fresh.append(did)
            if len(fresh) >= self._compact_every:
                self._compact_fresh()
            return e.dsp_received
        kind = type(d)
        if kind is bytes:
            d = unpack(did, d)
            kind = DeliveryExpected
        if kind is not Delivery or d.exp is not None or d.record is not None:
            held = d if kind is not Delivery else (d.exp or d.record)
            if _same_expectation(held, e):
                self._duplicates += 1
            else:
                self._conflicts += 1
            return e.dsp_received
        # Its attempts came first: join now.
        if d.window is not None:  # it was counted as a delivery without alert
            self._drop_orphan(did, d)
            self._pending += 1
        if any(a[2] or a[0] is None for a in d.attempts) or e.dsp_received + self._timeout <= self._clocks.watermark:
            self._resolve(did, e, d.attempts, out)
        else:
            d.exp = e
            d.flags = e.flags
            self._add_deadline(did, e.dsp_received + self._timeout)
        return e.dsp_received

    def _on_attempted(self, a: DeliveryAttempted, out: list[AstRecord]) -> int | None:
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
        d: Any = self._deliveries.get(did)  # one of four kinds, see _on_expected
        if d is None:  # not (yet) expected
            d = Delivery()
            d.attempts = (key,)
            self._deliveries[did] = d
            self._pending += 1
            if passed is None:
                d.at = self._clocks.arrival_time()
            at = self._orphan_time(d)
            if at is not None:
                self._add_deadline(did, at + self._timeout)
            return t
        kind = type(d)
        if kind is bytes:
            d = unpack(did, d)
            kind = DeliveryExpected
        if kind is DeliveryExpected:
            if final:
                self._resolve(did, d, (key,), out)
            else:
                w = Delivery()
                w.exp = d
                w.flags = d.flags
                w.attempts = (key,)
                self._deliveries[did] = w
            return t
        if kind is AstRecord:
            d = self._delivery_of_record(did, d)
        if key in d.attempts:
            self._duplicates += 1
            return t
        d.attempts = (*d.attempts, key)
        if d.record is not None:
            self._revise(did, d, out)
        elif d.exp is not None:
            if final:
                self._resolve(did, d.exp, d.attempts, out)
        elif d.window is not None:  # a delivery without alert, already counted
            if self._orphan_start(d) != d.window:
                self._drop_orphan(did, d)
                self._count_orphan(did, d)
        else:  # a delivery without alert, pending
            at = self._orphan_time(d)
            if at is not None:
                self._add_deadline(did, at + self._timeout)
        return t

    def _on_response(self, e: ServiceResponseSeen, closed: list[ClosedWindow]) -> int:
        if e.event_id in self._counted:
            self._duplicates += 1
            return e.dsp_received
        if self._first is None:
            self._start(e.dsp_received)
        w = self._window_for(e.dsp_received)
        if w is None:
            self._too_late += 1
            return e.dsp_received
        self._counted.add(e.event_id)
        w.event_ids.append(e.event_id)
        w.responses[e.region] = w.responses.get(e.region, 0) + 1
        self._touch(w)
        return e.dsp_received

    def _on_rejected(self, e: RejectedInput, closed: list[ClosedWindow]) -> int | None:
        if e.event_id in self._counted:
            self._duplicates += 1
            return e.dsp_received
        # No time of its own: count it at the alerts' clock, the nearest to when it arrived.
        t = e.dsp_received if e.dsp_received is not None else (
            int(self._clocks.alert) if self._clocks.alert != -_NEVER else self._clocks.event_time)
        if t is None:
            self._unplaced.append(e)
            self._counted.add(e.event_id)
            return None
        if self._first is None:
            self._start(t)
        self._count_rejected(e, t)
        return e.dsp_received

    def _count_rejected(self, e: RejectedInput, t: int) -> None:
        w = self._window_for(t)
        if w is None:
            self._too_late += 1
            return
        self._counted.add(e.event_id)
        w.event_ids.append(e.event_id)
        region = s.IN_CSP.get(e.subject)
        w.rejected[region] = w.rejected.get(region, 0) + 1
        self._touch(w)

    # ------------------------------------------------------------------- records

    def _resolve(self, did: str, e: DeliveryExpected, attempts: tuple[Attempt, ...],
                 out: list[AstRecord]) -> None:
        """First record of a pending expected delivery (acknowledged, or timed out)."""
        rec = build_record(e, attempts, 1, did)
        self._pending -= 1
        out.append(rec)
        if (not attempts or (len(attempts) == 1 and attempts[0][2])) and DERIVED_FLAGS.isdisjoint(e.flags):
            self._deliveries[did] = rec
        else:
            d = Delivery()
            d.flags = e.flags
            d.attempts = attempts
            d.record = rec
            self._deliveries[did] = d
        w = self._window_for(e.dsp_received)
        if w is None:
            # Its window is forgotten (event time ran on past the horizon first, e.g. while
            # something upstream stalled): no report revision, but the record stands and an
            # acknowledgement that comes later still revises it. It is held as long as the
            # window of the current event time.
            self._too_late += 1
            hold = None if self._clocks.event_time is None else self._window_for(self._clocks.event_time)
            if hold is None:
                del self._deliveries[did]
            else:
                hold.late.add(did)
            return
        w.records[did] = rec
        ptr = self._close_ptr  # set once a window exists
        if ptr is not None and w.start < ptr:
            self._dirty.add(w.start)

    def _delivery_of_record(self, did: str, rec: AstRecord) -> Delivery:
        """The full state of a delivery stored as its record."""
        d = Delivery()
        d.record = rec
        d.flags = tuple(f for f in rec.flags if f not in DERIVED_FLAGS)
        if rec.delivery_attempts:
            d.attempts = ((parse_iso_ms(rec.su_passed), parse_iso_ms(rec.su_acknowledged), True, rec.throttled_count),)
        self._deliveries[did] = d
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
        w = self._windows.get(window_start_of(e.dsp_received, self._w))
        if w is not None and did in w.records:
            w.records[did] = rec
            self._touch(w)

    # ------------------------------------------------------------------- orphans

    @staticmethod
    def _orphan_time(d: Delivery) -> int | None:
        """A delivery without alert's time: its earliest su_passed, else (throttled attempts
        only) the event time its first one arrived at."""
        return min((x[0] for x in d.attempts if x[0] is not None), default=d.at)

    def _orphan_start(self, d: Delivery) -> int:
        return window_start_of(self._orphan_time(d), self._w)  # type: ignore[arg-type]

    def _count_orphan(self, did: str, d: Delivery) -> None:
        w = self._window_for(self._orphan_time(d))  # type: ignore[arg-type]
        if w is None:
            self._too_late += 1
            del self._deliveries[did]
            return
        d.window = w.start
        w.orphans.add(did)
        self._touch(w)

    def _drop_orphan(self, did: str, d: Delivery) -> None:
        w = None if d.window is None else self._windows.get(d.window)
        d.window = None
        if w is not None:
            w.orphans.discard(did)
            self._touch(w)

    # ------------------------------------------------------------------- windows

    def _start(self, t: int) -> None:
        start = window_start_of(t, self._w)
        self._first = self._close_ptr = start
        self._next_evict = start + self._w + self._timeout + self._horizon
        self._next_action = min(self._next_due, start + self._w + self._timeout)
        if self._unplaced:
            pending, self._unplaced = self._unplaced, []
            for e in pending:
                self._counted.discard(e.event_id)
                self._count_rejected(e, t)

    def _touch(self, w: Window) -> None:
        ptr = self._close_ptr  # set once a window exists
        if ptr is not None and w.start < ptr:
            self._dirty.add(w.start)

    def _window_for(self, t: int) -> Window | None:
        start = t - t % self._w
        w = self._windows.get(start)
        if w is not None:
            return w
        if start < self._retain_from:
            return None  # forgotten
        if self._first is None:  # an event placed before any event time: reporting starts here
            self._start(start)
        w = self._windows[start] = Window(start)
        first = self._first
        assert first is not None  # set by _start just above, if not before
        if start < first:
            if first == self._close_ptr:  # nothing closed yet: reporting starts earlier
                self._first = self._close_ptr = start
                self._next_evict = start + self._w + self._timeout + self._horizon
                self._next_action = min(self._next_action, start + self._w + self._timeout)
            else:  # before the first window already reported: report the gap as well
                for gap in range(start + self._w, first, self._w):
                    if gap not in self._windows:
                        self._windows[gap] = Window(gap)
                    self._dirty.add(gap)
                self._dirty.add(start)
                self._first = start
        return w

    def _add_deadline(self, did: str, deadline: int) -> None:
        key = deadline // _BUCKET_MS
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [did]
            heapq.heappush(self._bucket_keys, key)
            at = key * _BUCKET_MS
            if at < self._next_due:
                self._next_due = at
                if at < self._next_action:
                    self._next_action = at
        else:
            bucket.append(did)
            if deadline < self._next_due:  # the partly-due bucket: exact time matters
                self._next_due = deadline
                if deadline < self._next_action:
                    self._next_action = deadline

    def _deadline(self, d: Any) -> int | None:
        """Deadline of a pending delivery, None when it is not pending."""
        kind = type(d)
        if kind is DeliveryExpected:
            return d.dsp_received + self._timeout
        if kind is bytes:
            return packed_dsp_received(d) + self._timeout
        if kind is AstRecord or d.record is not None:
            return None
        if d.exp is not None:
            return d.exp.dsp_received + self._timeout
        if d.window is not None:
            return None
        at = self._orphan_time(d)
        return None if at is None else at + self._timeout

    def _advance(self, records: list[AstRecord], closed: list[ClosedWindow]) -> None:
        wm = self._clocks.watermark
        timeout = self._timeout
        # 1. handshake timeouts
        if wm >= self._next_due:
            due: dict[str, int] = {}
            heap = self._bucket_keys
            deliveries = self._deliveries
            self._next_due = _NEVER
            while heap and heap[0] * _BUCKET_MS <= wm:
                key = heapq.heappop(heap)
                keep = []
                soonest = _NEVER
                for did in self._buckets.pop(key):
                    d: Any = deliveries.get(did)  # one of four kinds, see _on_expected
                    kind = type(d)
                    if kind is AstRecord or d is None:
                        continue  # finished (the common case) or forgotten
                    dl = d.dsp_received + timeout if kind is DeliveryExpected else self._deadline(d)
                    if dl is None or dl // _BUCKET_MS != key:
                        continue  # resolved, or it has an entry in its own bucket
                    if dl <= wm:
                        due[did] = dl
                    else:
                        keep.append(did)
                        if dl < soonest:
                            soonest = dl
                if keep:
                    self._buckets[key] = keep
                    heapq.heappush(heap, key)
                    self._next_due = soonest
                    break
            if self._next_due == _NEVER and heap:
                self._next_due = heap[0] * _BUCKET_MS
            if due:
                for did in sorted(due, key=lambda k: (due[k], k)):
                    d = deliveries[did]
                    if type(d) is bytes:
                        d = unpack(did, d)
                    if type(d) is DeliveryExpected:
                        self._resolve(did, d, (), records)
                    elif d.exp is not None:
                        self._resolve(did, d.exp, d.attempts, records)
                    else:
                        self._pending -= 1
                        self._count_orphan(did, d)
        # 2. windows
        w_ms = self._w
        ptr = self._close_ptr
        if ptr is None:
            self._next_action = self._next_due
            return
        close_at = ptr + w_ms + timeout
        if wm < close_at and wm < self._next_evict:
            nd, ne = self._next_due, self._next_evict
            self._next_action = (nd if nd < close_at else close_at) if nd < ne else (ne if ne < close_at else close_at)
            return
        horizon_start = int(wm) - w_ms - timeout - self._horizon  # windows starting at/before: forgotten
        retain_from = horizon_start - horizon_start % w_ms + w_ms
        if ptr < retain_from and retain_from - ptr > self._max_gap:
            # event time jumped ahead by more than the horizon: the empty windows of the gap
            # are not reported (the ones with data are, then forgotten at once)
            for start in sorted(st for st in self._windows if ptr <= st < retain_from):
                self._close(self._windows[start], closed)
            ptr = int(retain_from)
        while ptr + w_ms + timeout <= wm:
            w = self._windows.get(ptr)
            if w is None:
                w = self._windows[ptr] = Window(ptr)
            self._close(w, closed)
            ptr += w_ms
        self._close_ptr = ptr
        if self._dirty:
            self._flush_dirty(closed)
        # 3. forget windows beyond the horizon
        if retain_from > self._retain_from:
            self._retain_from = int(retain_from)
            for start in [st for st in self._windows if st < retain_from]:
                self._evict(self._windows.pop(start))
        assert self._first is not None  # set by the first event, before any window closes
        low = max(self._retain_from, self._first)
        self._next_evict = low + w_ms + timeout + self._horizon
        self._next_action = min(self._next_due, self._next_close(), self._next_evict)

    def _next_close(self) -> float:
        ptr = self._close_ptr
        return _NEVER if ptr is None else ptr + self._w + self._timeout

    def _evict(self, w: Window) -> None:
        deliveries = self._deliveries
        for did in w.records:
            deliveries.pop(did, None)
        for did in w.orphans:
            deliveries.pop(did, None)
        for did in w.late:
            deliveries.pop(did, None)
        self._counted.difference_update(w.event_ids)
        self._dirty.discard(w.start)

    def _close(self, w: Window, closed: list[ClosedWindow]) -> None:
        self._dirty.discard(w.start)
        w.revision += 1
        closed.append(self._closed_window(w))

    def _flush_dirty(self, closed: list[ClosedWindow]) -> None:
        for start in sorted(self._dirty):
            w = self._windows.get(start)
            if w is not None and self._close_ptr is not None and start < self._close_ptr:
                w.revision += 1
                closed.append(self._closed_window(w))
        self._dirty.clear()

    def _compact_fresh(self) -> None:
        """Expectations still pending since the last sweep are packed (most were resolved
        meanwhile and cost nothing here)."""
        deliveries = self._deliveries
        for did in self._fresh:
            d: Any = deliveries.get(did)  # one of four kinds, see _on_expected
            kind = type(d)
            if kind is DeliveryExpected:
                deliveries[did] = pack(d)
            elif kind is Delivery and d.exp is not None and d.exp.event_id:
                d.exp = compact(d.exp)
        self._fresh = []

    # ------------------------------------------------------------------- reports

    def _closed_window(self, w: Window) -> ClosedWindow:
        return closed_window(w, self._w, self._sketcher)


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


def export_state(core: MetricsCore) -> bytes:
    """The core's whole state as msgpack bytes (the core is left as it is)."""
    return core.export_state()


def import_state(data: bytes, config: MetricsConfig | None = None) -> MetricsCore:
    """A core holding the state ``export_state`` wrote. ``config``: the configuration the
    caller runs with; a state written under another one raises ``StateError`` (its windows,
    deadlines and sketches would not be this configuration's)."""
    st = decode_state(data, config)
    core = MetricsCore(st.config)
    core.load_state(st)
    return core

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

from collections.abc import Iterable
from typing import Any

from services.metrics.clock import NEVER, Clocks
from services.metrics.compact import window_start_of
from services.metrics.join import COMPACT_EVERY, Join
from services.metrics.model import ClosedWindow, CoreStats, MetricsConfig, Output
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
from services.metrics.windows import Windows
from shared.events import (
    AstRecord,
    ClockTick,
    DeliveryAttempted,
    DeliveryExpected,
    RejectedInput,
    ServiceResponseSeen,
    WallClock,
)
from shared.sketches import ddsketch_of, leg_stats_from_bins, merge_reports, sketch_quantiles
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


class MetricsCore:
    """The clocks, the join and the windows, moved together by ``apply``. See the module
    docstring for the rules."""

    __slots__ = ("_ignored", "_records_emitted", "_reports_emitted", "clocks", "config", "join", "windows")

    def __init__(self, config: MetricsConfig | None = None, compact_every: int = COMPACT_EVERY) -> None:
        """``compact_every``: pending expectations are packed after this many new ones."""
        self.config = config = config or MetricsConfig()
        self.clocks = Clocks(config)
        self.windows = Windows(config)
        self.join = Join(config, self.clocks, self.windows, compact_every)
        self._records_emitted = 0
        self._reports_emitted = 0
        self._ignored = 0

    # ------------------------------------------------------------------ public

    def apply(self, events: Iterable[Any]) -> Output:
        records: list[AstRecord] = []
        closed: list[ClosedWindow] = []
        on_expected, on_attempted = self.join.on_expected, self.join.on_attempted
        clocks, join, windows = self.clocks, self.join, self.windows
        seen = False
        t: int | None
        for ev in events:
            kind = type(ev)
            if kind is DeliveryExpected:
                t = on_expected(ev, records)
            elif kind is DeliveryAttempted:
                t = on_attempted(ev, records)
            elif kind is ClockTick:
                t = ev.time
            elif kind is ServiceResponseSeen:  # counted; moves no clock (see "Event time and watermark")
                windows.count_response(ev)
                t = None
            elif kind is RejectedInput:  # likewise
                self._on_rejected(ev)
                t = None
            elif kind is WallClock:  # not an input: the count of quiet wall time goes on
                if seen:  # the inputs before it, as at the end of a batch (batching changes nothing)
                    clocks.mark_input()
                    seen = False
                self._on_wall_clock(ev)
                self._advance(records, closed)
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
                if windows.first_reported is None:
                    windows.start(raw)  # reporting starts at the first event's own window
            if t is not None:
                event_time = clocks.event_time
                if event_time is None or t > event_time:  # clocks.move_to(t), inlined: this is the hot path
                    clocks.event_time = t
                    clocks.watermark = t - clocks.lateness
            watermark = clocks.watermark
            if watermark >= join.next_due or watermark >= windows.due:
                self._advance(records, closed)
            elif windows.revised:
                windows.report_revised(closed)
        if seen:
            clocks.mark_input()
        self._records_emitted += len(records)
        self._reports_emitted += len(closed)
        return Output(records=records, closed=closed)

    def _advance(self, records: list[AstRecord], closed: list[ClosedWindow]) -> None:
        """What the watermark now reaches: handshake timeouts, then closing and forgetting
        windows, then reporting the closed windows changed meanwhile."""
        watermark = self.clocks.watermark
        self.join.time_out(watermark, records)
        for w in self.windows.close_due(watermark, closed):
            self.join.forget(w)
        if self.windows.revised:
            self.windows.report_revised(closed)

    def _next_action(self) -> float:
        """The watermark at which something is next due (a timeout, a window closed or forgotten)."""
        return min(self.join.next_due, self.windows.due)

    def wall_clock_event(self, now_wall_ms: int, last_input_wall_ms: int,
                         last_log_wall_ms: int | None = None, partition: int = 0) -> WallClock | None:
        """The wall clock's move, as an event for the log (None: no move); see
        ``Clocks.wall_clock_event``. Pure: the state changes only when it is applied."""
        return self.clocks.wall_clock_event(now_wall_ms, last_input_wall_ms, last_log_wall_ms, partition)

    def wall_clock_due(self, event: WallClock) -> bool:
        """Whether applying ``event`` would change an output now (time out a delivery, close or
        forget a window): the only wall-clock moves worth putting in the log."""
        target = self.clocks.event_time_after(event)
        if target is None:
            return False
        return self.windows.first_reported is None or target - self.clocks.lateness >= self._next_action()

    def on_wall_clock(self, now_wall_ms: int, last_input_wall_ms: int,
                      last_log_wall_ms: int | None = None) -> Output:
        """``wall_clock_event`` applied at once (tests and tools; the service puts the event in
        the log and applies it from there)."""
        event = self.wall_clock_event(now_wall_ms, last_input_wall_ms, last_log_wall_ms)
        return self.apply([event]) if event is not None else Output()

    def _on_wall_clock(self, e: WallClock) -> None:
        clocks = self.clocks
        t = clocks.follow(e)
        if t is None:
            return
        if self.windows.first_reported is None and (clocks.event_time is None or t > clocks.event_time):
            self.windows.start(t)
        clocks.move_to(t)

    def _on_rejected(self, e: RejectedInput) -> None:
        # No time of its own: count it at the alerts' clock, the nearest to when it arrived.
        clocks = self.clocks
        t = e.dsp_received if e.dsp_received is not None else (
            int(clocks.alert) if clocks.alert != -NEVER else clocks.event_time)
        self.windows.count_rejected(e, t)

    def stats(self) -> CoreStats:
        clocks = self.clocks
        return CoreStats(
            pending=self.join.pending,
            deliveries_tracked=len(self.join.deliveries),
            windows_open=self.windows.open_count(clocks.event_time),
            windows_retained=self.windows.retained_count(),
            event_time=format_iso(clocks.event_time),
            alert_clock=format_iso(int(clocks.alert)) if clocks.alert != -NEVER else None,
            log_clock=format_iso(int(clocks.log)) if clocks.log != -NEVER else None,
            watermark=format_iso(int(clocks.watermark)) if clocks.event_time is not None else None,
            records_emitted=self._records_emitted,
            reports_emitted=self._reports_emitted,
            duplicates=self.join.duplicates + self.windows.duplicates,
            conflicting_expectations=self.join.conflicts,
            too_late=self.join.too_late + self.windows.too_late,
            ignored=self._ignored,
        )

    @property
    def pending(self) -> int:
        return self.join.pending

    def export_state(self) -> bytes:
        """The whole state as msgpack bytes (``export_state``); the core is left as it is."""
        join, windows, clocks = self.join, self.windows, self.clocks
        return encode_state(CoreState(
            version=STATE_VERSION, config=self.config, deliveries=delivery_entries(join.deliveries),
            pending=join.pending, fresh=list(join.fresh), buckets=list(join.buckets.items()),
            bucket_keys=list(join.bucket_heap), next_due=join.next_due,
            windows=window_states(windows.windows, join.deliveries), first_reported=windows.first_reported,
            closed_before=windows.closed_before, forgotten_before=windows.forgotten_before,
            revised=sorted(windows.revised), counted=sorted(windows.counted_event_ids),
            unplaced=list(windows.unplaced_rejections),
            event_time=clocks.event_time, alert_clock=clocks.alert, log_clock=clocks.log,
            clocks_at_input=clocks.at_input, watermark=clocks.watermark, next_action=self._next_action(),
            next_forget=windows.next_forget, event_time_at_input=clocks.event_time_at_input,
            counters=(self._records_emitted, self._reports_emitted, join.duplicates + windows.duplicates,
                      join.conflicts, join.too_late + windows.too_late, self._ignored),
        ))

    def load_state(self, st: CoreState) -> None:
        """Take over a decoded state (``import_state``); a fresh core only."""
        join, windows, clocks = self.join, self.windows, self.clocks
        join.deliveries = deliveries_from(st.deliveries)
        join.pending = st.pending
        join.fresh = list(st.fresh)
        join.buckets = {k: list(v) for k, v in st.buckets}
        join.bucket_heap = list(st.bucket_keys)
        join.next_due = st.next_due
        windows.windows = windows_from(st.windows, join.deliveries)
        windows.first_reported, windows.closed_before = st.first_reported, st.closed_before
        windows.forgotten_before, windows.next_forget = st.forgotten_before, st.next_forget
        windows.revised = set(st.revised)
        windows.counted_event_ids = set(st.counted)
        windows.unplaced_rejections = list(st.unplaced)
        windows.reschedule()
        clocks.event_time, clocks.watermark = st.event_time, st.watermark
        clocks.alert, clocks.log, clocks.at_input = st.alert_clock, st.log_clock, st.clocks_at_input
        clocks.event_time_at_input = st.event_time_at_input
        # The counters are written as their sums: the join's side holds them after a load.
        (self._records_emitted, self._reports_emitted, join.duplicates, join.conflicts, join.too_late,
         self._ignored) = st.counters
        windows.duplicates = windows.too_late = 0


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

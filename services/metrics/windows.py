"""Windows and revisions: an event's window, closing at the watermark, reporting again, forgetting."""

from __future__ import annotations

from services.metrics.clock import NEVER
from services.metrics.model import ClosedWindow, MetricsConfig, Window
from services.metrics.reports import closed_window
from shared import subjects as s
from shared.events import RejectedInput, ServiceResponseSeen
from shared.sketches import Sketcher

__all__ = ["Windows"]

#: A gap of event time longer than this (or the horizon, if longer) is not back-filled with
#: empty windows.
_LONGEST_BACKFILL_MS = 86_400_000


class Windows:
    """The windows of one core (see ``services.metrics.core``, "Windows"): their content, which
    are closed, which were changed after their report, and the responses and rejections counted
    in them. ``due``: the watermark at which the next window closes or is forgotten."""

    __slots__ = ("closed_before", "counted_event_ids", "due", "duplicates", "first_reported", "forgotten_before",
                 "horizon", "next_forget", "revised", "sketcher", "timeout", "too_late", "unplaced_rejections",
                 "window_ms", "windows")

    def __init__(self, config: MetricsConfig) -> None:
        self.window_ms = config.window_ms
        self.timeout = config.handshake_timeout_ms
        self.horizon = config.done_horizon_ms
        self.sketcher = Sketcher(config.sketch_relative_accuracy)
        self.windows: dict[int, Window] = {}
        #: The first window reported (or to be); None before any event time.
        self.first_reported: int | None = None
        #: Windows starting before this one are closed (None: none exists yet).
        self.closed_before: int | None = None
        #: Windows starting before this one are forgotten.
        self.forgotten_before: float = -NEVER
        #: Closed windows changed since their last report: reported again at the end of the step.
        self.revised: set[int] = set()
        #: Responses and rejections counted in a window still held.
        self.counted_event_ids: set[str] = set()
        #: Rejections that came before any event time, counted once there is one.
        self.unplaced_rejections: list[RejectedInput] = []
        #: The watermark at which the oldest window held is forgotten.
        self.next_forget: float = NEVER
        #: The watermark at which a window is next closed or forgotten (``reschedule``).
        self.due: float = NEVER
        self.duplicates = 0
        self.too_late = 0

    def reschedule(self) -> None:
        """``due`` from where the windows stand."""
        closed_before = self.closed_before
        if closed_before is None:
            self.due = NEVER
        else:
            close_at = closed_before + self.window_ms + self.timeout
            self.due = close_at if close_at < self.next_forget else self.next_forget

    def start(self, t: int) -> None:
        """Reporting starts at the window of ``t`` (the first event's own)."""
        start = t - t % self.window_ms
        self.first_reported = self.closed_before = start
        self.next_forget = start + self.window_ms + self.timeout + self.horizon
        self.reschedule()
        if self.unplaced_rejections:
            pending, self.unplaced_rejections = self.unplaced_rejections, []
            for e in pending:
                self.counted_event_ids.discard(e.event_id)
                self._count_rejected(e, t)

    def touch(self, w: Window) -> None:
        """``w`` changed: reported again at the end of the step when it is closed already."""
        closed_before = self.closed_before  # set once a window exists
        if closed_before is not None and w.start < closed_before:
            self.revised.add(w.start)

    def get(self, start: int) -> Window | None:
        return self.windows.get(start)

    def window_for(self, t: int) -> Window | None:
        """The window of event time ``t``, made when new (None: forgotten already)."""
        window_ms = self.window_ms
        start = t - t % window_ms
        w = self.windows.get(start)
        if w is not None:
            return w
        if start < self.forgotten_before:
            return None
        if self.first_reported is None:  # an event placed before any event time: reporting starts here
            self.start(start)
        w = self.windows[start] = Window(start)
        first = self.first_reported
        assert first is not None  # set by start just above, if not before
        if start < first:
            if first == self.closed_before:  # nothing closed yet: reporting starts earlier
                self.first_reported = self.closed_before = start
                self.next_forget = start + window_ms + self.timeout + self.horizon
                self.reschedule()
            else:  # before the first window already reported: report the gap as well
                for gap in range(start + window_ms, first, window_ms):
                    if gap not in self.windows:
                        self.windows[gap] = Window(gap)
                    self.revised.add(gap)
                self.revised.add(start)
                self.first_reported = start
        return w

    # ------------------------------------------------------------ responses and rejections

    def count_response(self, e: ServiceResponseSeen) -> None:
        if e.event_id in self.counted_event_ids:
            self.duplicates += 1
            return
        if self.first_reported is None:
            self.start(e.dsp_received)
        w = self.window_for(e.dsp_received)
        if w is None:
            self.too_late += 1
            return
        self.counted_event_ids.add(e.event_id)
        w.event_ids.append(e.event_id)
        w.responses[e.region] = w.responses.get(e.region, 0) + 1
        self.touch(w)

    def count_rejected(self, e: RejectedInput, t: int | None) -> None:
        """A rejection at event time ``t`` (None: no event time yet, counted once there is one)."""
        if e.event_id in self.counted_event_ids:
            self.duplicates += 1
            return
        if t is None:
            self.unplaced_rejections.append(e)
            self.counted_event_ids.add(e.event_id)
            return
        if self.first_reported is None:
            self.start(t)
        self._count_rejected(e, t)

    def _count_rejected(self, e: RejectedInput, t: int) -> None:
        w = self.window_for(t)
        if w is None:
            self.too_late += 1
            return
        self.counted_event_ids.add(e.event_id)
        w.event_ids.append(e.event_id)
        region = s.IN_CSP.get(e.subject)
        w.rejected[region] = w.rejected.get(region, 0) + 1
        self.touch(w)

    # ------------------------------------------------------------ closing and forgetting

    def close_due(self, watermark: float, closed: list[ClosedWindow]) -> list[Window]:
        """Close every window the watermark has passed, report the revised ones, forget those
        beyond the horizon (returned: their deliveries are forgotten with them)."""
        window_ms, timeout = self.window_ms, self.timeout
        closed_before = self.closed_before
        if closed_before is None or watermark < self.due:
            return []
        horizon_start = int(watermark) - window_ms - timeout - self.horizon  # windows starting at/before: forgotten
        forget_before = horizon_start - horizon_start % window_ms + window_ms
        if closed_before < forget_before and forget_before - closed_before > max(self.horizon, _LONGEST_BACKFILL_MS):
            # event time jumped ahead by more than the horizon: the empty windows of the gap
            # are not reported (the ones with data are, then forgotten at once)
            for start in sorted(st for st in self.windows if closed_before <= st < forget_before):
                self._close(self.windows[start], closed)
            closed_before = int(forget_before)
        while closed_before + window_ms + timeout <= watermark:
            w = self.windows.get(closed_before)
            if w is None:
                w = self.windows[closed_before] = Window(closed_before)
            self._close(w, closed)
            closed_before += window_ms
        self.closed_before = closed_before
        if self.revised:
            self.report_revised(closed)
        forgotten: list[Window] = []
        if forget_before > self.forgotten_before:
            self.forgotten_before = int(forget_before)
            for start in [st for st in self.windows if st < forget_before]:
                w = self.windows.pop(start)
                self.counted_event_ids.difference_update(w.event_ids)
                self.revised.discard(w.start)
                forgotten.append(w)
        assert self.first_reported is not None  # set by the first event, before any window closes
        low = max(self.forgotten_before, self.first_reported)
        self.next_forget = low + window_ms + timeout + self.horizon
        self.reschedule()
        return forgotten

    def _close(self, w: Window, closed: list[ClosedWindow]) -> None:
        self.revised.discard(w.start)
        w.revision += 1
        closed.append(closed_window(w, self.window_ms, self.sketcher))

    def report_revised(self, closed: list[ClosedWindow]) -> None:
        """Report every closed window changed since its last report again, as revision n+1."""
        closed_before = self.closed_before
        for start in sorted(self.revised):
            w = self.windows.get(start)
            if w is not None and closed_before is not None and start < closed_before:
                w.revision += 1
                closed.append(closed_window(w, self.window_ms, self.sketcher))
        self.revised.clear()

    def open_count(self, event_time: int | None) -> int:
        closed_before = self.closed_before
        n = sum(1 for st in self.windows if closed_before is None or st >= closed_before)
        if closed_before is not None and event_time is not None:
            last = event_time - event_time % self.window_ms
            n = max(n, (last - closed_before) // self.window_ms + 1)
        return n

    def retained_count(self) -> int:
        closed_before = self.closed_before
        return sum(1 for st in self.windows if closed_before is not None and st < closed_before)

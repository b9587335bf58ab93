"""The clocks: event time from the alerts' and the delivery log's clocks, the watermark, wall-clock moves."""

from __future__ import annotations

from services.metrics.model import MetricsConfig
from shared.events import WallClock

__all__ = ["NEVER", "Clocks"]

NEVER = float("inf")


class Clocks:
    """Two input clocks and the event time and watermark they give (see ``services.metrics.core``,
    "Event time and watermark"). Event time never goes back. The core moves ``alert``, ``log``,
    ``event_time`` and ``watermark`` itself on its hot path; everything else is here."""

    __slots__ = ("alert", "at_input", "config", "event_time", "event_time_at_input", "lateness", "log",
                 "watermark")

    def __init__(self, config: MetricsConfig) -> None:
        self.config = config
        self.lateness = config.allowed_lateness_ms
        #: The alerts' clock: greatest dsp_received of expectations (responses, rejections: none).
        self.alert: float = -NEVER
        #: The delivery log's clock: greatest su_passed or su_acknowledged of attempts.
        self.log: float = -NEVER
        #: The slower of the two (None: the delivery log has said nothing yet).
        self.event_time: int | None = None
        #: Event time minus the allowed lateness.
        self.watermark: float = -NEVER
        #: The later of the two clocks, and the event time, when the last input was applied.
        self.at_input: float = -NEVER
        self.event_time_at_input: int | None = None

    def slower(self) -> int | None:
        """Event time from the two clocks: the slower one."""
        a, log = self.alert, self.log
        if log == -NEVER:
            return None
        return int(min(a, log)) if a != -NEVER else int(log)

    def move_to(self, t: int) -> None:
        """Event time to ``t``, when that is later."""
        et = self.event_time
        if et is None or t > et:
            self.event_time = t
            self.watermark = t - self.lateness

    def mark_input(self) -> None:
        """An input was applied: wall-clock moves count their quiet time from here."""
        self.event_time_at_input = self.event_time
        self.at_input = max(self.alert, self.log)

    def follow(self, e: WallClock) -> int | None:
        """Both clocks moved on to ``e``'s (never back); the event time they now give."""
        if e.alert_clock > self.alert:
            self.alert = e.alert_clock
        if e.log_clock > self.log:
            self.log = e.log_clock
        return self.slower()

    def event_time_after(self, e: WallClock) -> int | None:
        """The event time ``e`` would move to (None: no later than now)."""
        alert, log_ = max(self.alert, e.alert_clock), max(self.log, e.log_clock)
        target = int(min(alert, log_)) if alert != -NEVER else int(log_)
        if self.event_time is not None and target <= self.event_time:
            return None
        return target

    def arrival_time(self) -> int | None:
        """Now, in event time, for a log line with no time of its own (a throttled one)."""
        if self.event_time is not None:
            return self.event_time
        return int(self.alert) if self.alert != -NEVER else None

    def wall_clock_event(self, now_wall_ms: int, last_input_wall_ms: int,
                         last_log_wall_ms: int | None = None, partition: int = 0) -> WallClock | None:
        """Live runs only: the wall clock's move, as an event for the log (None: no move). After
        ``idle_close_after_s`` without any input, event time moves on by the wall time elapsed
        since the last input, so a quiet stream still closes windows. After
        ``idle_close_after_s`` without a delivery-log input (``last_log_wall_ms``; None: never)
        while alerts flow, the log's clock follows the alerts' ``max_log_lag_ms`` behind.
        Pure: the state changes only when the event is applied, in log order."""
        limit = self.config.idle_close_after_s * 1000
        idle = now_wall_ms - last_input_wall_ms
        base = self.event_time_at_input
        alert, log_ = self.alert, self.log
        if base is not None and idle >= limit:
            target = int(max(base, self.at_input)) + idle  # from the last input, not the last call
            new_alert, new_log = max(alert, target), max(log_, target)
        elif alert != -NEVER and (last_log_wall_ms is None or now_wall_ms - last_log_wall_ms >= limit):
            new_alert, new_log = alert, max(log_, alert - self.config.max_log_lag_ms)
        else:
            return None
        if new_alert <= alert and new_log <= log_:
            return None
        a, lg = int(new_alert), int(new_log)
        return WallClock(event_id=f"wall-clock:{partition}:{a}:{lg}", partition=partition, alert_clock=a, log_clock=lg)

"""The metrics core's data: its configuration, its outputs, and what it holds per delivery and window."""

from __future__ import annotations

import msgspec

from services.metrics.records import Attempt
from shared.events import AstRecord, DeliveryExpected, WindowReport

__all__ = ["ClosedWindow", "CoreStats", "Delivery", "MetricsConfig", "Output", "Window"]


class MetricsConfig(msgspec.Struct, frozen=True, kw_only=True):
    window_ms: int = 900_000
    allowed_lateness_ms: int = 300_000
    handshake_timeout_ms: int = 300_000
    #: Live runs: after this long without input, event time follows the wall clock.
    idle_close_after_s: float = 30.0
    #: How far the alerts' clock may run ahead of the delivery log's before event time follows
    #: the alerts alone (a stalled log feed must not hold every window open for ever).
    max_log_lag_ms: int = 1_800_000
    #: How long finished deliveries and closed windows are remembered (de-duplication, revisions).
    done_horizon_ms: int = 86_400_000
    sketch_relative_accuracy: float = 0.01

    def __post_init__(self) -> None:
        if self.window_ms <= 0:
            raise ValueError("window_ms must be positive")
        if (self.allowed_lateness_ms < 0 or self.handshake_timeout_ms < 0 or self.done_horizon_ms < 0
                or self.max_log_lag_ms < 0):
            raise ValueError("allowed_lateness_ms, handshake_timeout_ms, done_horizon_ms, max_log_lag_ms must be >= 0")
        if not 0.0 < self.sketch_relative_accuracy < 1.0:
            raise ValueError("sketch_relative_accuracy must be between 0 and 1")


class ClosedWindow(msgspec.Struct, frozen=True, kw_only=True):
    """A window's report (revision n) and the latest revision of each of its records,
    sorted by delivery_id. ``start_ms``/``end_ms``: the window in epoch milliseconds."""

    report: WindowReport
    records: list[AstRecord]
    start_ms: int
    end_ms: int


class Output(msgspec.Struct, kw_only=True):
    """What one step produced, in order: new records and revisions, closed windows."""

    records: list[AstRecord] = []
    closed: list[ClosedWindow] = []

    def __bool__(self) -> bool:
        return bool(self.records or self.closed)


class CoreStats(msgspec.Struct, frozen=True, kw_only=True):
    pending: int  # deliveries waiting for an acknowledgement or the handshake timeout
    deliveries_tracked: int  # pending + finished ones still remembered
    windows_open: int
    windows_retained: int  # closed windows still held for revisions
    event_time: str | None
    watermark: str | None
    alert_clock: str | None  # latest dsp_received seen
    log_clock: str | None  # latest delivery-log time seen (a stalled log feed shows here)
    records_emitted: int
    reports_emitted: int
    duplicates: int
    conflicting_expectations: int
    too_late: int
    ignored: int


class Delivery:
    """What is known about one delivery, when more than an expectation or a record.

    ``exp``: the expectation while no record exists (then dropped: the record holds it);
    ``flags``: the expectation's own flags; ``attempts``: distinct attempts as
    (su_passed, su_acknowledged, acknowledged, throttled_count), su_passed None for a
    throttled one; ``record``: the latest record published; ``window``: for a delivery
    without alert, the window where it is counted; ``at``: for a delivery without alert
    whose attempts are all throttled (no time of their own), the event time it arrived at.

    The common cases are stored without this wrapper: a pending delivery with no attempt
    is its ``DeliveryExpected`` (or, once swept, that expectation packed into ``bytes``); a
    finished one whose attempts the record itself tells (none, or one acknowledged) is its
    ``AstRecord``.
    """

    __slots__ = ("at", "attempts", "exp", "flags", "record", "window")

    def __init__(self) -> None:
        self.exp: DeliveryExpected | None = None
        self.flags: tuple[str, ...] = ()
        self.attempts: tuple[Attempt, ...] = ()
        self.record: AstRecord | None = None
        self.window: int | None = None
        self.at: int | None = None


class Window:
    """One window's content: its records, deliveries without alert, counts and revision."""

    __slots__ = ("event_ids", "late", "records", "rejected", "responses", "revision", "start", "without_alert")

    def __init__(self, start: int) -> None:
        self.start = start
        self.records: dict[str, AstRecord] = {}
        self.without_alert: set[str] = set()
        #: Deliveries resolved while this window was current whose own window was already
        #: forgotten: held (for an acknowledgement that revises them) until this one is.
        self.late: set[str] = set()
        self.responses: dict[str | None, int] = {}
        self.rejected: dict[str | None, int] = {}
        self.event_ids: list[str] = []
        self.revision = 0

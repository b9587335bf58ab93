"""Event schemas: immutable facts the services append, JSON on the wire.

Every event carries ``v`` (schema version) and a deterministic ``event_id``
that is also sent as ``Nats-Msg-Id``, so a redelivered input yields the same
id and JetStream drops the copy. Times inside events are UTC epoch
milliseconds; the outbound contract objects (``ast.deliver``, ``ast.record``,
``ast.report.15m``) use the formats their readers expect.
"""

from __future__ import annotations

import hashlib
from itertools import pairwise
from typing import Any, Literal, NamedTuple

import msgspec

SCHEMA_VERSION = 1

Region = Literal["north", "central", "south"]
Category = Literal["device_alert", "dcc_alert"]
Status = Literal["complete", "no_handshake", "incomplete", "throttled"]
Outcome = Literal["acknowledged", "failed", "throttled"]
#: Where dsp_received came from: the gateway's header, or JetStream's store time.
DspReceivedSource = Literal["header", "stream"]

# Flags a record can carry.
FLAG_MISSING_HUB_TIMESTAMP = "missing_hub_timestamp"
FLAG_CLOCK_SKEW = "clock_skew"
FLAG_CSP_RECEIVED_MAPPED = "csp_received_mapped"  # CSP North: `timestamp` is when it *left* CSP
FLAG_ALERT_CODE_UNKNOWN = "alert_code_unknown"  # encrypted / undecodable content
FLAG_NO_DCC_RULE = "no_dcc_rule"


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    v: int = SCHEMA_VERSION
    event_id: str


class AlertCaptured(Event, frozen=True, tag="alert_captured"):
    """hub-capture: an inbound CSP message, parsed and validated, timing points captured."""

    response_id: str
    region: Region
    comms_hub_id: int
    payload: str  # Base64 GBCS, as the CSP sent it
    chf_received: int | None  # HubTimestamp / chfReceivedTimestamp
    csp_received: int | None  # CSP Central/South feed; None for North (mapped downstream)
    csp_sent: int  # North `timestamp`; Central/South cspSentTimestamp
    dsp_received: int
    dsp_received_source: DspReceivedSource
    source_seq: int
    extra: dict[str, Any] = {}
    trace: str | None = None  # W3C traceparent of the alert's trace


class AlertEnriched(Event, frozen=True, tag="alert_enriched"):
    """csp-enrichment: the alert with its GBCS header decoded and CSP times mapped."""

    response_id: str
    region: Region
    comms_hub_id: int
    message_code: str
    alert_code: str | None
    originator: str
    recipient: str
    device_alert_time: int | None
    chf_received: int | None
    csp_received: int | None
    csp_sent: int
    dsp_received: int
    flags: tuple[str, ...] = ()
    trace: str | None = None


class OutageNotified(Event, frozen=True, tag="outage_notified"):
    """hub-capture: a CSP's notification of a power outage (shape: ``shared.csp_notifications``).

    Passed on by csp-enrichment (no GBCS inside); dsp-mapping raises DCC Alert AD1 for an outage
    of ``min_duration_s`` or more. The CSP's times are the notification's own; it has hub points
    only when the notification carries them."""

    response_id: str  # the notification's id
    region: Region
    comms_hub_id: int
    outage_duration_s: int
    chf_received: int | None
    csp_received: int
    csp_sent: int
    dsp_received: int
    dsp_received_source: DspReceivedSource
    source_seq: int
    extra: dict[str, Any] = {}
    trace: str | None = None


class ServiceResponseSeen(Event, frozen=True, tag="service_response_seen"):
    """csp-enrichment: a GBCS Service Response (or command) on the alert interface, passed over."""

    response_id: str
    region: Region
    cra_flag: str
    message_code: str
    dsp_received: int


class DeliveryExpected(Event, frozen=True, tag="delivery_expected"):
    """dsp-mapping: one alert the DSP passes to a Service User (device alert or DCC alert)."""

    delivery_id: str
    response_id: str
    region: Region
    comms_hub_id: int
    category: Category
    alert_code: str | None
    dcc_alert_code: str | None
    message_code: str | None  # None: no GBCS message behind it (AD1)
    originator: str | None  # None: raised by the DCC itself (AD1)
    recipient: str
    service_user_id: str
    device_alert_time: int | None
    chf_received: int | None
    csp_received: int | None
    csp_sent: int
    dsp_received: int
    flags: tuple[str, ...] = ()
    trace: str | None = None


class DeliveryAttempted(Event, frozen=True, tag="delivery_attempted"):
    """dsp-mapping: one line of the DSP delivery log, validated.

    ``outcome`` ``throttled``: the DSP discarded the alert under Alert Storm Protection, so it
    was never passed (``su_passed`` and ``su_acknowledged`` None). ``throttled_count``: on a
    forwarded alert, how many identical alerts storm protection held back (DUIS
    ``ThrottledAlertCount``), when the line says."""

    delivery_id: str
    response_id: str
    dcc_alert_code: str | None
    service_user_id: str
    su_passed: int | None
    su_acknowledged: int | None
    outcome: Outcome
    throttled_count: int | None = None
    #: Where the delivery-log line is stored (its ``AST_IN`` sequence): trace reads it by
    #: sequence. None in events written before it was carried.
    source_seq: int | None = None


class ClockTick(Event, frozen=True, tag="clock_tick"):
    """The DSP gateway's clock, so event time moves on when traffic stops."""

    time: int


class WallClock(Event, frozen=True, tag="wall_clock"):
    """metrics: a live run's decision to move event time on by the wall clock (a quiet stream, or
    a silent delivery log), put in the log so a replay closes the same windows at the same point.
    ``alert_clock`` / ``log_clock``: the least each of the two clocks is moved to (epoch ms;
    a clock already past it stays where it is)."""

    partition: int
    alert_clock: int
    log_clock: int


class RejectedInput(Event, frozen=True, tag="rejected_input"):
    """An input a stage could not use, kept whole (``raw`` is Base64 in JSON) with the reason."""

    stage: str
    reason: str  # machine-readable, e.g. "bad_json", "bad_timestamp", "bad_gbcs"
    message: str  # for people
    subject: str
    headers: dict[str, str] = {}
    raw: bytes = b""
    source_seq: int | None = None
    dsp_received: int | None = None


AnyEvent = (
    AlertCaptured
    | AlertEnriched
    | OutageNotified
    | ServiceResponseSeen
    | DeliveryExpected
    | DeliveryAttempted
    | ClockTick
    | WallClock
    | RejectedInput
)


class IndexEntry(msgspec.Struct, frozen=True, kw_only=True):
    """The trace index (``ast.index.<key>``): where an alert's messages are stored. Written
    once per fact, not per stage: hub-capture's entry for the input (its sequence and the
    captured envelope's), metrics' for the record (the record's, and the envelopes and
    delivery-log lines of the batch that made it); a rejection has one too. The rest of the
    journey is read by sequence from there (``alert-timing trace``). The subject is the alert's
    bucket, shared with other alerts: ``response_id`` says whose entry it is (entries written
    before it was added have none: read them all)."""

    v: int = SCHEMA_VERSION
    stage: str
    at: list[tuple[str, int]]  # (stream, sequence)
    response_id: str | None = None


class Batch(msgspec.Struct, frozen=True, kw_only=True):
    """Envelope of intermediate subjects: several events in one message (fewer broker round trips)."""

    v: int = SCHEMA_VERSION
    events: list[AnyEvent]


def batch_id(events: list[AnyEvent]) -> str:
    """Deterministic id of an envelope: the same events give the same ``Nats-Msg-Id``."""
    digest = hashlib.blake2b(digest_size=16)
    for event in events:
        digest.update(event.event_id.encode())
        digest.update(b"\0")
    return f"batch:{digest.hexdigest()}"


# Outbound contract objects ------------------------------------------------------------


class DeliverNotice(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """``ast.deliver``: one alert the DSP passes to a Service User."""

    v: int = SCHEMA_VERSION
    delivery_id: str
    response_id: str
    dcc_alert_code: str | None
    service_user_id: str


class AstRecord(msgspec.Struct, frozen=True, kw_only=True):
    """``ast.record``: one delivered alert's timing points and legs (the AST log line)."""

    v: int = SCHEMA_VERSION
    delivery_id: str
    response_id: str
    revision: int
    region: Region
    comms_hub_id: int
    category: Category
    alert_code: str | None
    alert_name: str | None
    dcc_alert_code: str | None
    message_code: str | None
    originator: str | None
    recipient: str | None
    service_user_id: str | None
    device_alert_time: str | None
    chf_received: str | None
    csp_received: str | None
    csp_sent: str | None
    dsp_received: str | None
    su_passed: str | None
    su_acknowledged: str | None
    hub_to_csp_ms: int | None
    csp_to_dsp_ms: int | None
    dsp_to_su_ms: int | None
    su_handshake_ms: int | None
    end_to_end_ms: int | None
    status: Status
    flags: list[str]
    delivery_attempts: int
    #: Alerts storm protection held back before this one was forwarded (DUIS ThrottledAlertCount),
    #: when the delivery log said; None otherwise.
    throttled_count: int | None = None


TIMING_POINTS = (
    "device_alert_time",
    "chf_received",
    "csp_received",
    "csp_sent",
    "dsp_received",
    "su_passed",
    "su_acknowledged",
)



class Leg(NamedTuple):
    """A timing leg: ``end - start`` in milliseconds, held in the record's ``field``."""

    name: str  # as the operations commands show it
    start: str  # the timing point it runs from
    end: str  # the timing point it runs to

    @property
    def field(self) -> str:
        return f"{self.name}_ms"


#: The legs, defined here only: the metrics core computes them, the report and the operations
#: commands read and show them.
LEG_SPANS: tuple[Leg, ...] = (
    Leg("hub_to_csp", "chf_received", "csp_received"),
    Leg("csp_to_dsp", "csp_sent", "dsp_received"),
    Leg("dsp_to_su", "dsp_received", "su_passed"),
    Leg("su_handshake", "su_passed", "su_acknowledged"),
    Leg("end_to_end", "chf_received", "su_acknowledged"),
)
#: The records' leg fields, in order.
LEGS = tuple(leg.field for leg in LEG_SPANS)

#: The alert-journey trace's legs: every hop between consecutive timing points, by the title
#: its span shows (the device's own clock starts it).
JOURNEY_TITLES = ("device to hub (device clock)", "hub to CSP", "CSP processing", "CSP to DSP",
                  "DSP to Service User", "Service User handshake")
JOURNEY_LEGS: tuple[Leg, ...] = tuple(Leg(title, start, end) for title, (start, end)
                                      in zip(JOURNEY_TITLES, pairwise(TIMING_POINTS), strict=True))

RECORD_FIELDS = tuple(f for f in AstRecord.__struct_fields__)


def record_id(delivery_id: str, revision: int) -> str:
    return f"rec:{delivery_id}:{revision}"


encoder = msgspec.json.Encoder()
batch_decoder = msgspec.json.Decoder(Batch)
record_decoder = msgspec.json.Decoder(AstRecord)
deliver_decoder = msgspec.json.Decoder(DeliverNotice)


# Window reports -----------------------------------------------------------------------


class SketchBins(msgspec.Struct, frozen=True, kw_only=True):
    """A DDSketch in mergeable form (logarithmic mapping, values > 0 in ``bins``).

    A value ``x > 0`` falls in bin ``ceil(log(x) / log(gamma) + index_offset)``; ``bins`` maps
    that bin index to its count, ``zero_count`` counts the values equal to 0. Two sketches with
    the same ``gamma`` and ``index_offset`` merge by adding the counts bin by bin, so 15-minute
    sketches roll up into days and months with the same relative error bound.
    """

    mapping: Literal["logarithmic"] = "logarithmic"
    relative_accuracy: float
    gamma: float
    index_offset: float = 0.0
    zero_count: int = 0
    bins: dict[int, int] = {}


class LegStats(msgspec.Struct, frozen=True, kw_only=True):
    """One leg's distribution over a window (ms). ``count``, ``min``, ``max`` and ``sum`` are
    exact; the percentiles come from ``sketch`` (bound: ``sketch_relative_accuracy`` of the
    report). Negative values (clock skew) are not in here."""

    count: int
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    min: int | None
    max: int | None
    sum: int
    sketch: SketchBins


class ReportRow(msgspec.Struct, frozen=True, kw_only=True):
    """Counts and leg distributions of one slice: ``region``/``category`` or ``"all"``."""

    region: str
    category: str
    alerts: int
    complete: int
    no_handshake: int
    incomplete: int
    #: Discarded by the DSP's Alert Storm Protection: counted in ``alerts``, in no leg.
    throttled: int = 0
    missing_hub_timestamp: int
    clock_skew: int
    delivery_without_alert: int
    service_responses_seen: int
    rejected: int
    legs: dict[str, LegStats]


class WindowReport(msgspec.Struct, frozen=True, kw_only=True):
    """``ast.report.15m``: one 15-minute window (by ``dsp_received``), revision n.

    ``sketch_relative_accuracy`` is the bound of every percentile in the report: a percentile
    ``p`` of ``q`` is within that fraction of ``x[floor(q * (count - 1))]``, the ordered
    value at that rank (the lower of the two points an exact interpolating quantile uses).
    """

    v: int = SCHEMA_VERSION
    window_start: str
    window_end: str
    revision: int
    sketch_relative_accuracy: float
    rows: list[ReportRow]


class RollupReport(msgspec.Struct, frozen=True, kw_only=True):
    """Several window reports merged (latest revision of each window): a day, a month."""

    v: int = SCHEMA_VERSION
    period_start: str | None
    period_end: str | None
    windows: int
    sketch_relative_accuracy: float
    rows: list[ReportRow]


report_decoder = msgspec.json.Decoder(WindowReport)


# --------------------------------------------------------------------------- delivery to DS&A


class DeliveredFile(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    sha256: str
    bytes: int


class WindowDelivered(msgspec.Struct, frozen=True, kw_only=True):
    """``ast.delivered.<partition>``: one window revision's files arrived at the landing zone
    (DS&A's File Gateway), each under its final name, the ``.sha256`` last. The event id
    ``delivered:<landing>:<file_set>`` is the ``Nats-Msg-Id``."""

    v: int = SCHEMA_VERSION
    event_id: str
    file_set: str
    date: str
    landing: str
    files: list[DeliveredFile]
    delivered_at: str


class DeliveryBacklog(msgspec.Struct, frozen=True, kw_only=True):
    """``ast.delivery-backlog.<partition>``: what a metrics partition still has to deliver,
    published when it changes; ``alert-timing status`` reads the last one."""

    v: int = SCHEMA_VERSION
    partition: int
    landing: str
    pending: int
    oldest_file_set: str | None
    oldest_written_at: str | None
    delivered: int
    last_error: str | None
    #: Sets kept out because a file or ``.sha256`` with other content is at the landing zone
    #: (never overwritten; examined again from time to time): how many, and which.
    quarantined: int = 0
    quarantined_file_sets: list[str] = []
    at: str


delivered_decoder = msgspec.json.Decoder(WindowDelivered)
backlog_decoder = msgspec.json.Decoder(DeliveryBacklog)

"""The SIT scenario: every sample alert the change request names for System Integration
Testing, at least twice per device type, and a check that each record it should give came out.

Samples: DCC Alert AD1 (a CSP's power-outage notification, on each CSP feed), the Device
Alerts 8F3F, 810D, 8F0F and 8F72 to a supplier from an electricity (ESME, DLMS content) and a
gas (GSME, GBZ content) meter, and Device Alerts to the Access Control Broker that raise the
DCC Alerts N39, N53, N54 and N62 (which Device Alert raises which comes from the rule table in
force). Every Service User acknowledges every delivery, so every expected record is
``complete``. Pure: building the traffic and checking the records do no I/O.

The samples are dated from 2023-06-01 00:00, or, on a pipeline that has already run, after its
own event time (``sit_start``): samples far behind it would time out before their
acknowledgements count.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from alert_timing.simulator.traffic import (
    DEFAULT_START,
    FEEDS,
    SUPPLIER,
    Inbound,
    Traffic,
    TrafficConfig,
    outage_input,
)
from shared.csp_notifications import PowerOutageShape
from shared.dcc_rules import RuleTable
from shared.events import (
    AnyEvent,
    AstRecord,
    ClockTick,
    DeliveryAttempted,
    DeliveryExpected,
    RejectedInput,
    ServiceResponseSeen,
    WallClock,
)
from shared.gbcs import ACB_EUI, build_alert
from shared.timefmt import format_csp, from_ms

DEVICE_ALERTS = ("8F3F", "810D", "8F0F", "8F72")
DCC_ALERTS = ("N39", "N53", "N54", "N62")
#: Device types: (name, GBCS content format).
DEVICE_TYPES = (("ESME", "dlms"), ("GSME", "gbz"))
REGIONS = ("north", "central", "south")
COPIES = 2
STEP_MS = 2_000
#: How long after a used pipeline's event time the samples start.
AFTER_PIPELINE_MS = 60_000


@dataclass(frozen=True)
class Expected:
    """One record the scenario expects: which delivery, and what it must say."""

    delivery_id: str
    category: str
    alert_code: str | None
    dcc_alert_code: str | None


@dataclass
class Case:
    """One row of the table: a sample alert from one device type, sent ``COPIES`` times."""

    sample: str
    device_type: str
    sent: int = 0
    expected: list[Expected] = field(default_factory=list)
    problem: str | None = None  # the scenario could not even send it (e.g. no rule raises the DCC Alert)


@dataclass(frozen=True)
class Row:
    sample: str
    device_type: str
    sent: int
    expected: int
    came_out: int
    passed: bool
    note: str


def raising_code(rules: RuleTable, dcc_code: str) -> str | None:
    """A Device Alert code that raises ``dcc_code`` by the rule table: the SIT samples first."""
    for code in (*DEVICE_ALERTS, *rules.codes()):
        if any(rule.dcc_alert_code == dcc_code for rule in rules.rules_for(code)):
            return code
    return None


def event_time_of(event: AnyEvent) -> int | None:
    """The latest time an input of the metrics service moves its clocks to (None: none)."""
    if isinstance(event, (DeliveryExpected, ServiceResponseSeen, RejectedInput)):
        return event.dsp_received
    if isinstance(event, DeliveryAttempted):
        return max((t for t in (event.su_passed, event.su_acknowledged) if t is not None), default=None)
    if isinstance(event, ClockTick):
        return event.time
    if isinstance(event, WallClock):
        return max(event.alert_clock, event.log_clock)
    return None


def pipeline_event_time(latest: Iterable[tuple[list[AnyEvent], int]], now_ms: int) -> int | None:
    """At most the event time the pipeline is at now (None: it has seen nothing).

    ``latest``: the events of the last message on each of the metrics service's input subjects,
    with the wall time JetStream stored it. A quiet pipeline moves its event time on by the wall
    time since its last input (``MetricsCore.wall_clock_event``): each message's latest time
    plus the wall time since it was stored bounds that."""
    times = [t + max(0, now_ms - stored_ms)
             for events, stored_ms in latest
             if (t := max((x for e in events if (x := event_time_of(e)) is not None), default=None)) is not None]
    return max(times, default=None)


def sit_start(pipeline_ms: int | None) -> int:
    """Where the samples' clock starts: 2023-06-01 00:00, or after the pipeline's event time."""
    if pipeline_ms is None:
        return DEFAULT_START
    return max(DEFAULT_START, pipeline_ms + AFTER_PIPELINE_MS)


def sit_traffic(rules: RuleTable, outage: PowerOutageShape, seed: int = 1,
                start_ms: int = DEFAULT_START) -> tuple[Traffic, list[Case]]:
    """The scenario's inputs (in DSP-receipt order) and the table rows they should fill."""
    rng = random.Random(seed)
    config = TrafficConfig(alerts=0, seed=seed, start_ms=start_ms)
    traffic = Traffic(always_acknowledge=True)
    cases: list[Case] = []
    clock = start_ms
    n = 0

    def next_id(prefix: str) -> str:
        nonlocal n
        n += 1
        return f"{prefix}{seed:04d}{n:06d}"

    # AD1: a power outage at least as long as the threshold, notified on every CSP feed.
    for region in REGIONS:
        case = Case("AD1 power outage", f"CSP {region}")
        for _ in range(COPIES):
            clock += STEP_MS
            notification_id = next_id("SITPO")
            inbound, dsp_received = outage_input(
                config, outage, region=region, notification_id=notification_id, hub_id=rng.randrange(1, 2**32),
                duration_s=outage.min_duration_s + rng.randrange(0, 600), csp_received=clock, rng=rng,
                label=case.sample)
            _add(traffic, case, inbound, dsp_received)
            case.expected += [Expected(d, "dcc_alert", None, outage.dcc_alert_code) for d in inbound.deliveries]
        cases.append(case)

    # Device Alerts to a supplier.
    for code in DEVICE_ALERTS:
        for device_type, fmt in DEVICE_TYPES:
            case = Case(f"{code} to supplier", device_type)
            for k in range(COPIES):
                clock += STEP_MS
                response_id = next_id("SITDA")
                inbound, dsp_received = _alert(rng, REGIONS[(n + k) % 3], response_id, code, SUPPLIER, fmt, clock,
                                               (response_id,), case.sample)
                _add(traffic, case, inbound, dsp_received)
                case.expected.append(Expected(response_id, "device_alert", code, None))
            cases.append(case)

    # Device Alerts to the ACB, raising the DCC Alerts.
    for dcc_code in DCC_ALERTS:
        raising = raising_code(rules, dcc_code)
        for device_type, fmt in DEVICE_TYPES:
            case = Case(f"{dcc_code} via {raising or '?'} to ACB", device_type)
            if raising is None:
                case.problem = f"no rule in {rules.source} raises {dcc_code}"
                cases.append(case)
                continue
            raised = rules.rules_for(raising)
            for k in range(COPIES):
                clock += STEP_MS
                response_id = next_id("SITAC")
                made = tuple(f"{response_id}:{rule.dcc_alert_code}:{i}" for i, rule in enumerate(raised, start=1))
                inbound, dsp_received = _alert(rng, REGIONS[(n + k) % 3], response_id, raising, ACB_EUI, fmt,
                                               clock, made, case.sample)
                _add(traffic, case, inbound, dsp_received)
                case.expected += [Expected(d, "dcc_alert", raising, rule.dcc_alert_code)
                                  for d, rule in zip(made, raised, strict=True)]
            cases.append(case)
    traffic.inputs.sort(key=lambda i: i.dsp_received)
    return traffic, cases


def _add(traffic: Traffic, case: Case, inbound: Inbound, dsp_received: int) -> None:
    traffic.inputs.append(inbound)
    traffic.dsp_received[inbound.response_id] = dsp_received
    case.sent += 1


def _alert(rng: random.Random, region: str, response_id: str, code: str, recipient: str, fmt: str,
           hub_ms: int, deliveries: tuple[str, ...], label: str) -> tuple[Inbound, int]:
    hub_id = rng.randrange(1, 2**32)
    device = "00-DB-12-34-" + "-".join(f"{(hub_id >> s) & 0xFF:02X}" for s in (24, 16, 8, 0))
    frame = build_alert(alert_code=code, originator=device, recipient=recipient,
                        alert_time=from_ms(hub_ms - rng.randrange(100, 2_000)), counter=rng.randrange(1, 2**31),
                        fmt=fmt, mac_header=recipient == ACB_EUI, signed=False)  # type: ignore[arg-type]
    payload = base64.b64encode(frame).decode()
    csp_in = hub_ms + rng.randrange(800, 4_000)
    if region == "north":
        csp_sent = csp_in + 350
        body: dict[str, object] = {"responseId": response_id, "commsHubId": hub_id, "payload": payload,
                                   "timestamp": format_csp(csp_sent), "HubTimestamp": format_csp(hub_ms)}
    else:
        csp_sent = csp_in + rng.randrange(50, 300)
        body = {"messageId": response_id, "commsHubId": hub_id, "payload": payload,
                "chfReceivedTimestamp": format_csp(hub_ms), "cspReceivedTimestamp": format_csp(csp_in),
                "cspSentTimestamp": format_csp(csp_sent)}
    dsp_received = csp_sent + rng.randrange(20, 200)
    return Inbound(subject=FEEDS[region], data=msgspec.json.encode(body),
                   headers={"Dsp-Received-Timestamp": format_csp(dsp_received)}, response_id=response_id,
                   kind="alert", dsp_received=dsp_received, deliveries=deliveries, alert_code=code,
                   comms_hub_id=hub_id, recipient=recipient, label=label), dsp_received


def check(cases: list[Case], records: dict[str, AstRecord]) -> list[Row]:
    """Each row: did every record it expects come out, saying what it should, complete?"""
    rows = []
    for case in cases:
        wrong: list[str] = []
        came_out = 0
        for want in case.expected:
            got = records.get(want.delivery_id)
            if got is None:
                continue
            came_out += 1
            if (got.category, got.alert_code, got.dcc_alert_code) != (want.category, want.alert_code,
                                                                      want.dcc_alert_code):
                wrong.append(f"{want.delivery_id} is {got.category}/{got.alert_code}/{got.dcc_alert_code}")
            elif got.status != "complete":
                wrong.append(f"{want.delivery_id} is {got.status}")
        missing = len(case.expected) - came_out
        notes = [case.problem] if case.problem else []
        if missing:
            notes.append(f"{missing} missing")
        notes += wrong[:2]
        passed = case.problem is None and case.sent >= COPIES and bool(case.expected) and not missing and not wrong
        rows.append(Row(case.sample, case.device_type, case.sent, len(case.expected), came_out, passed,
                        "; ".join(notes)))
    return rows


def format_table(rows: list[Row]) -> str:
    head = f"{'sample':<26}{'device':<13}{'sent':>5}{'expected':>10}{'out':>6}  result"
    lines = [head, "-" * len(head)]
    for r in rows:
        result = "pass" if r.passed else "FAIL"
        lines.append(f"{r.sample:<26}{r.device_type:<13}{r.sent:>5}{r.expected:>10}{r.came_out:>6}  {result}"
                     + (f"  {r.note}" if r.note else ""))
    passed = sum(r.passed for r in rows)
    lines.append(f"{passed}/{len(rows)} passed")
    return "\n".join(lines)

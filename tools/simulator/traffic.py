"""Pure, seeded traffic: what the CSPs send and how Service Users answer.

Realism, as the operators described it: the hub stamps an alert a few seconds before the
CSP; CSP North stamps ~350 ms of processing later (its `timestamp` is when the alert
*left*); some hubs send no HubTimestamp; a share of Service Responses shares the
interface; alerts to the Access Control Broker fan out to DCC alerts; Service Users
acknowledge after realistic delays, some after a failed first attempt, some never; an
outage storm puts a burst into one quarter hour, from devices that repeat themselves, so the
DSP's Alert Storm Protection throttles the repeats (``storm_protection``); the CSPs notify
some power outages (DCC Alert AD1 for three minutes or more); a few hub clocks run ahead
(clock skew). Frames are real GBCS built by ``shared.gbcs``.

Who, so that the report's ``by_service_user.csv`` and ``worst_hubs.csv`` have something to
find (illustrative, all drawn from the seed; on in ``simulate`` and the demo, ``ILLUSTRATIVE_WHO``):
a device's alerts go to its supplier, one of ``SUPPLIERS`` (by hub); a few suppliers acknowledge
30-50 s late (``slow_service_users``); a small share of the alerts come from two cohorts of busy
hubs, some that send their alerts 20 s late and some behind CSP North that omit HubTimestamp
(``cohort_share``).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from shared import subjects as s
from shared.csp_notifications import PowerOutageShape
from shared.dcc_rules import RuleTable
from shared.gbcs import ACB_EUI, build_alert, build_response
from shared.timefmt import format_csp, from_ms, to_ms

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
#: The suppliers whose devices send alerts (the first one is also the DCC rules' supplier).
SUPPLIERS = tuple(f"90-B3-D5-1F-30-01-00-{k:02X}" for k in range(6))
#: Who is slow in ``simulate`` and the demo (off by default: tests' traffic stays as it was).
ILLUSTRATIVE_WHO = {"suppliers": len(SUPPLIERS), "slow_service_users": 2, "cohort_share": 0.03}
NETWORK_OPERATOR = "90-B3-D5-1F-30-02-00-00"
DEFAULT_START = to_ms(datetime(2023, 6, 1, tzinfo=UTC))
DAY_MS = 86_400_000

REGIONS = (("north", 0.40), ("central", 0.35), ("south", 0.25))

# (alert code, recipient, content format, weight): the seed's SIT samples and friends.
ALERT_MIX = (
    ("8F3F", SUPPLIER, "dlms", 6),  # unauthorised physical access (tamper), meter -> supplier
    ("8F3F", ACB_EUI, "dlms", 3),  # tamper seen by a hub -> ACB -> N39 + N54
    ("810D", SUPPLIER, "dlms", 10),  # combined credit below low credit threshold
    ("8F0F", SUPPLIER, "dlms", 5),  # credit below disablement threshold
    ("8F72", SUPPLIER, "dlms", 4),  # firmware verification successful
    ("8F1D", SUPPLIER, "gbz", 4),  # gas: power supply loss
    ("8F12", ACB_EUI, "dlms", 2),  # CHF device log changed -> ACB
    ("8F20", ACB_EUI, "dlms", 1),
    ("8F66", SUPPLIER, "asn1", 2),  # future-dated command actioned
    ("8F35", NETWORK_OPERATOR, "dlms", 3),  # supply outage restored
)
STORM_MIX = (
    ("8F57", NETWORK_OPERATOR, "dlms", 5),  # supply interrupted
    ("8F35", NETWORK_OPERATOR, "dlms", 3),
    ("8F36", NETWORK_OPERATOR, "dlms", 2),
)


@dataclass(frozen=True)
class TrafficConfig:
    alerts: int = 10_000
    seed: int = 1
    start_ms: int = DEFAULT_START
    span_ms: int = DAY_MS
    service_response_share: float = 0.08
    missing_hub_share: float = 0.05
    skew_share: float = 0.005
    storm_share: float = 0.15  # of alerts, inside one quarter hour
    storm_at_ms: int = 7 * 3_600_000 + 30 * 60_000  # 07:30 into the span
    malformed_share: float = 0.0
    duplicate_share: float = 0.0
    #: CSP power-outage notifications, as a share of alerts (half of them in the storm).
    outage_share: float = 0.0
    #: Alert Storm Protection, as the DSP runs it: identical alerts (same device, same code)
    #: within this period of the one forwarded are discarded; the next one forwarded says how
    #: many were (throttledAlertCount). Codes in the exclusion list are never throttled.
    storm_period_ms: int = 300_000
    storm_excluded_codes: tuple[str, ...] = ("8F35", "8F36")
    #: Storm alerts come from this many alerts per device on average (repeats get throttled).
    storm_repeats: int = 4
    csp_north_processing_ms: int = 350
    #: How many of ``SUPPLIERS`` devices belong to (1: every device alert to the first).
    suppliers: int = 1
    #: How many of those suppliers (never the first) acknowledge late, and by how much (uniform).
    slow_service_users: int = 0
    slow_ack_ms: tuple[int, int] = (30_000, 50_000)
    #: Share of the alerts outside the storm that come from the illustrative hub cohorts: hubs
    #: that send ``late_hub_ms`` late, and CSP North hubs that send no HubTimestamp.
    cohort_share: float = 0.0
    late_hubs: int = 8
    late_hub_ms: int = 20_000
    silent_hubs: int = 8
    #: Send no Dsp-Received-Timestamp header: the JetStream store time stands for it (live runs).
    stream_time_is_dsp_received: bool = False


@dataclass(frozen=True)
class Inbound:
    """One message a CSP sends (subject, bytes, headers) and what it should become."""

    subject: str
    data: bytes
    headers: dict[str, str]
    response_id: str
    kind: str  # alert | outage (a CSP power-outage notification) | service_response | malformed | duplicate
    dsp_received: int
    deliveries: tuple[str, ...] = ()
    alert_code: str | None = None
    comms_hub_id: int | None = None
    recipient: str | None = None
    #: SIT scenario: the row of the pass/fail table this input belongs to.
    label: str | None = None


@dataclass
class Traffic:
    inputs: list[Inbound] = field(default_factory=list)
    dsp_received: dict[str, int] = field(default_factory=dict)  # response id -> DSP receipt
    #: Alert Storm Protection's decisions: deliveries discarded, and the count a forwarded one carries.
    throttled: frozenset[str] = frozenset()
    throttled_counts: dict[str, int] = field(default_factory=dict)
    #: Every Service User acknowledges every delivery the first time (the SIT scenario).
    always_acknowledge: bool = False
    #: Delivery id -> the DCC Alert code and Service User its ``ast.deliver`` notice should
    #: carry (filled by ``generate``): what the Service User side's answers are built from.
    routes: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    #: Built by ``prepare`` before a timed run: the inputs as messages, and each delivery's answers.
    prepared: Prepared | None = None
    #: Service User -> (least, most) ms its acknowledgements come late.
    slow_service_users: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: The hub cohorts: (region, hub id) of the hubs that send late, and of those without HubTimestamp.
    late_hubs: tuple[tuple[str, int], ...] = ()
    silent_hubs: tuple[tuple[str, int], ...] = ()

    def ack_late_ms(self, service_user_id: str, delivery_id: str) -> int:
        """How late this Service User acknowledges this delivery (0 but for the slow ones);
        deterministic per delivery."""
        late = self.slow_service_users.get(service_user_id)
        if late is None:
            return 0
        digest = hashlib.blake2b(f"late:{delivery_id}".encode(), digest_size=8).digest()
        return late[0] + int.from_bytes(digest, "big") % max(1, late[1] - late[0])

    @property
    def expected_deliveries(self) -> set[str]:
        return {d for i in self.inputs if i.kind in ("alert", "outage") for d in i.deliveries}

    def count(self, kind: str) -> int:
        return sum(1 for i in self.inputs if i.kind == kind)

    @property
    def last_event_ms(self) -> int:
        return max(self.dsp_received.values(), default=DEFAULT_START)


@dataclass(frozen=True)
class Prepared:
    """Everything the simulator sends, built before the run so that the run only sends it: each
    input as its message (``Nats-Msg-Id`` included), and each expected delivery's log lines
    keyed by the notice that asks for them (delivery id, response id, DCC Alert code, user)."""

    seed: int
    outgoing: list[tuple[str, bytes, dict[str, str]]]
    answers: dict[tuple[str, str, str | None, str], list[LogLine]]


def input_msg_id(i: Inbound, n: int) -> str:
    """The ``Nats-Msg-Id`` the n-th input is published with."""
    return f"dup:{i.response_id}:{n}" if i.kind == "duplicate" else f"in:{i.response_id}:{i.kind}:{n}"


def prepare(traffic: Traffic, seed: int) -> Prepared:
    """Build (once) the messages and answers of ``traffic``: call it before a timed window."""
    ready = traffic.prepared
    if ready is not None and ready.seed == seed and len(ready.outgoing) == len(traffic.inputs):
        return ready
    outgoing = []
    for n, i in enumerate(traffic.inputs):
        headers = {"Nats-Msg-Id": input_msg_id(i, n)}
        headers.update(i.headers)
        outgoing.append((i.subject, i.data, headers))
    answers = {}
    for i in traffic.inputs:
        if i.kind not in ("alert", "outage"):
            continue
        for d in i.deliveries:
            route = traffic.routes.get(d)
            if route is None:
                continue
            dcc, user = route
            answers[(d, i.response_id, dcc, user)] = service_user_answers(
                d, i.response_id, dcc, user, i.dsp_received, seed, throttled=d in traffic.throttled,
                throttled_count=traffic.throttled_counts.get(d), always_acknowledge=traffic.always_acknowledge,
                late_ms=traffic.ack_late_ms(user, d))
    traffic.prepared = Prepared(seed, outgoing, answers)
    return traffic.prepared


def _routes(traffic: Traffic, rules: RuleTable, outage: PowerOutageShape | None) -> dict[str, tuple[str | None, str]]:
    """Where each delivery goes, as dsp-mapping routes it (``services.dsp_mapping.core``)."""
    routes: dict[str, tuple[str | None, str]] = {}
    for i in traffic.inputs:
        if i.kind == "alert" and i.recipient == ACB_EUI:
            for d, rule in zip(i.deliveries, rules.rules_for(i.alert_code), strict=False):
                routes[d] = (rule.dcc_alert_code, rule.service_user_id)
        elif i.kind == "alert" and i.recipient is not None:
            for d in i.deliveries:
                routes[d] = (None, i.recipient)
        elif i.kind == "outage" and outage is not None:
            for d in i.deliveries:
                routes[d] = (outage.dcc_alert_code, outage.service_user)
    return routes


def _pick(rng: random.Random, options: tuple) -> tuple:
    return rng.choices(options, weights=[o[-1] for o in options])[0]


def cohorts(config: TrafficConfig) -> tuple[dict[str, tuple[int, int]], tuple[tuple[str, int], ...],
                                            tuple[tuple[str, int], ...]]:
    """The seed's slow Service Users, late hubs and CSP North hubs without HubTimestamp (a random
    stream of their own: the rest of the traffic is drawn as it was without them)."""
    rng = random.Random(config.seed * 104_729 + 17)
    slow = rng.sample(SUPPLIERS[1:config.suppliers], min(config.slow_service_users, config.suppliers - 1))
    late = tuple(_region_and_hub(rng) for _ in range(config.late_hubs))
    silent = tuple(("north", rng.randrange(1, 2**32)) for _ in range(config.silent_hubs))
    return {su: config.slow_ack_ms for su in slow}, late, silent


def generate(config: TrafficConfig, rules: RuleTable, outage: PowerOutageShape | None = None) -> Traffic:
    rng = random.Random(config.seed)
    traffic = Traffic()
    traffic.slow_service_users, traffic.late_hubs, traffic.silent_hubs = cohorts(config)
    cohort = traffic.late_hubs + traffic.silent_hubs
    cohort_rng = random.Random(config.seed * 104_729 + 29)
    storm_n = int(config.alerts * config.storm_share)
    times = sorted(
        [config.start_ms + rng.randrange(config.span_ms) for _ in range(config.alerts - storm_n)]
        + [config.start_ms + config.storm_at_ms + rng.randrange(900_000) for _ in range(storm_n)]
    )
    storm_start = config.start_ms + config.storm_at_ms
    # The storm's devices: each sends several alerts (its supply flapping), so repeats are many.
    pool = [_region_and_hub(random.Random(config.seed * 1_000_003 + k))
            for k in range(max(1, storm_n // max(1, config.storm_repeats)))]
    for n, hub_ms in enumerate(times):
        in_storm = storm_start <= hub_ms < storm_start + 900_000 and rng.random() < 0.8
        device = pool[rng.randrange(len(pool))] if in_storm else None
        if cohort and cohort_rng.random() < config.cohort_share and not in_storm:
            device = cohort[cohort_rng.randrange(len(cohort))]
        traffic.inputs.append(_one(rng, config, rules, n, hub_ms, in_storm, traffic, device))
    if outage is not None and config.outage_share > 0:
        _add_outages(config, outage, traffic, pool)
    _add_faults(rng, config, traffic)
    traffic.throttled, traffic.throttled_counts = storm_protection(
        traffic.inputs, config.storm_period_ms, config.storm_excluded_codes)
    traffic.routes = _routes(traffic, rules, outage)
    return traffic


def _region_and_hub(rng: random.Random) -> tuple[str, int]:
    region = rng.choices([r for r, _ in REGIONS], weights=[w for _, w in REGIONS])[0]
    return region, rng.randrange(1, 2**32)


def storm_protection(inputs: list[Inbound], period_ms: int,
                     excluded: tuple[str, ...] = ()) -> tuple[frozenset[str], dict[str, int]]:
    """What the DSP's Alert Storm Protection does to the Device Alerts it passes straight to
    Service Users, in the order it receives them: the first alert of a (device, alert code)
    is forwarded and opens a period; identical alerts within ``period_ms`` of it are discarded
    (throttled); the first one after the period is forwarded, opens the next period and
    carries how many were discarded in the last one. Codes in ``excluded`` are never
    throttled. Returns the throttled delivery ids, and forwarded delivery id -> count (only
    where the count is above zero)."""
    skip = {c.upper() for c in excluded}
    periods: dict[tuple[int, str], list[int]] = {}  # (device, code) -> [period start, discarded]
    throttled: set[str] = set()
    counts: dict[str, int] = {}
    alerts = [i for i in inputs if i.kind == "alert" and i.alert_code is not None and i.comms_hub_id is not None
              and i.deliveries == (i.response_id,) and i.alert_code.upper() not in skip]
    for i in sorted(alerts, key=lambda i: (i.dsp_received, i.response_id)):
        hub, code = i.comms_hub_id, i.alert_code
        assert hub is not None and code is not None  # the alerts above have both
        key = (hub, code.upper())
        period = periods.get(key)
        if period is not None and i.dsp_received - period[0] < period_ms:
            throttled.add(i.response_id)
            period[1] += 1
            continue
        if period is not None and period[1]:
            counts[i.response_id] = period[1]
        periods[key] = [i.dsp_received, 0]
    return frozenset(throttled), counts


def outage_notification(shape: PowerOutageShape, *, notification_id: str, hub_id: int, duration_s: int,
                        chf_received: int | None, csp_received: int, csp_sent: int) -> bytes:
    """A CSP's power-outage notification in the configured (illustrative) shape."""
    body: dict[str, object] = {
        shape.type_field: shape.type_value, shape.id_field: notification_id, "commsHubId": hub_id,
        shape.duration_field: duration_s, shape.csp_received_field: format_csp(csp_received),
        shape.csp_sent_field: format_csp(csp_sent),
    }
    if chf_received is not None:
        body[shape.chf_received_field] = format_csp(chf_received)
    return msgspec.json.encode(body)


def outage_input(config: TrafficConfig, shape: PowerOutageShape, *, region: str, notification_id: str,
                 hub_id: int, duration_s: int, csp_received: int, rng: random.Random,
                 label: str | None = None) -> tuple[Inbound, int]:
    """One notification on a CSP feed, and its DSP receipt."""
    csp_sent = csp_received + rng.randrange(50, 300)
    dsp_received = csp_sent + rng.randrange(20, 200)
    chf = csp_received - rng.randrange(500, 3_000) if rng.random() < 0.3 else None  # a last gasp, sometimes
    data = outage_notification(shape, notification_id=notification_id, hub_id=hub_id, duration_s=duration_s,
                               chf_received=chf, csp_received=csp_received, csp_sent=csp_sent)
    raised = (f"{notification_id}:{shape.dcc_alert_code}:1",) if duration_s >= shape.min_duration_s else ()
    return Inbound(
        subject=FEEDS[region], data=data,
        headers={} if config.stream_time_is_dsp_received else {"Dsp-Received-Timestamp": format_csp(dsp_received)},
        response_id=notification_id, kind="outage", dsp_received=dsp_received, deliveries=raised,
        comms_hub_id=hub_id, recipient=shape.service_user, label=label,
    ), dsp_received


def _add_outages(config: TrafficConfig, shape: PowerOutageShape, traffic: Traffic,
                 pool: list[tuple[str, int]]) -> None:
    """Power-outage notifications: half for the storm's devices (the cut behind the storm), half
    through the day; some outages are shorter than the DCC Alert's threshold."""
    rng = random.Random(config.seed * 7_919 + 1)
    n = int(config.alerts * config.outage_share)
    made: list[Inbound] = []
    for k in range(n):
        if k % 2 == 0:
            region, hub = pool[rng.randrange(len(pool))]
            at = config.start_ms + config.storm_at_ms + rng.randrange(900_000)
        else:
            region, hub = _region_and_hub(rng)
            at = config.start_ms + rng.randrange(config.span_ms)
        duration = rng.choice((60, 120, 180, 240, 600, 1_800, 7_200))
        notification_id = f"PO{config.seed:04d}{k:08d}"
        inbound, dsp_received = outage_input(config, shape, region=region, notification_id=notification_id,
                                             hub_id=hub, duration_s=duration, csp_received=at, rng=rng)
        traffic.dsp_received[notification_id] = dsp_received
        made.append(inbound)
    made.sort(key=lambda i: i.dsp_received)
    traffic.inputs = list(heapq.merge(traffic.inputs, made, key=lambda i: i.dsp_received))


FEEDS = {"north": s.IN_CSP_NORTH, "central": s.IN_CSP_CENTRAL, "south": s.IN_CSP_SOUTH}


def _one(rng: random.Random, config: TrafficConfig, rules: RuleTable, n: int, hub_ms: int,
         in_storm: bool, traffic: Traffic, device: tuple[str, int] | None = None) -> Inbound:
    region = rng.choices([r for r, _ in REGIONS], weights=[w for _, w in REGIONS])[0]
    hub_id = rng.randrange(1, 2**32)
    late_ms, silent = 0, False
    if device is not None:
        region, hub_id = device
        late_ms = config.late_hub_ms if device in traffic.late_hubs else 0
        silent = device in traffic.silent_hubs
    device_id = (f"00-DB-12-34-{(hub_id >> 24) & 0xFF:02X}-{(hub_id >> 16) & 0xFF:02X}"
              f"-{(hub_id >> 8) & 0xFF:02X}-{hub_id & 0xFF:02X}")
    response_id = f"{region[0].upper()}{config.seed:04d}{n:09d}"
    wan_ms = int(rng.lognormvariate(7.5, 0.4))  # ~1.8 s median WAN + hub
    skew = rng.random() < config.skew_share
    chf = hub_ms + (wan_ms + 2_000 if skew else 0)  # a hub clock running ahead
    csp_in = hub_ms + wan_ms + late_ms
    is_response = rng.random() < config.service_response_share
    if is_response:
        frame = build_response(originator=device_id, recipient=SUPPLIER, counter=n + 1,
                               mac_header=rng.random() < 0.3, signed=rng.random() < 0.5)
        code, recipient = None, SUPPLIER
    else:
        code, recipient, fmt, _ = _pick(rng, STORM_MIX if in_storm else ALERT_MIX)
        if recipient == SUPPLIER:
            recipient = SUPPLIERS[hub_id % min(config.suppliers, len(SUPPLIERS))]  # the device's own supplier
        frame = build_alert(alert_code=code, originator=device_id, recipient=recipient,
                            alert_time=from_ms(hub_ms - rng.randrange(100, 2_000)), counter=n + 1,
                            fmt=fmt, mac_header=recipient == ACB_EUI or rng.random() < 0.3,
                            signed=rng.random() < 0.2)
    payload = base64.b64encode(frame).decode()
    has_hub = rng.random() >= config.missing_hub_share and not silent
    if region == "north":
        csp_sent = csp_in + config.csp_north_processing_ms + rng.randrange(-40, 60)
        body: dict[str, object] = {"responseId": response_id, "commsHubId": hub_id, "payload": payload,
                                   "timestamp": format_csp(csp_sent)}
        if has_hub:
            body["HubTimestamp"] = format_csp(chf)
        if rng.random() < 0.1:
            body["rniVersion"] = "4.2"  # an extra field: kept, not rejected
    else:
        csp_sent = csp_in + rng.randrange(50, 300)
        body = {"messageId": response_id, "commsHubId": hub_id, "payload": payload,
                "chfReceivedTimestamp": format_csp(chf) if has_hub else None,
                "cspReceivedTimestamp": format_csp(csp_in), "cspSentTimestamp": format_csp(csp_sent)}
    dsp_received = csp_sent + rng.randrange(20, 200) + (rng.randrange(0, 3_000) if in_storm else 0)
    traffic.dsp_received[response_id] = dsp_received
    deliveries: tuple[str, ...] = ()
    if not is_response:
        if recipient == ACB_EUI:
            deliveries = tuple(f"{response_id}:{r.dcc_alert_code}:{i}"
                               for i, r in enumerate(rules.rules_for(code), start=1))
        else:
            deliveries = (response_id,)
    return Inbound(
        subject={"north": s.IN_CSP_NORTH, "central": s.IN_CSP_CENTRAL, "south": s.IN_CSP_SOUTH}[region],
        data=msgspec.json.encode(body),
        headers={} if config.stream_time_is_dsp_received else {"Dsp-Received-Timestamp": format_csp(dsp_received)},
        response_id=response_id,
        kind="service_response" if is_response else "alert",
        dsp_received=dsp_received,
        deliveries=deliveries,
        alert_code=code,
        comms_hub_id=hub_id,
        recipient=recipient,
    )


MALFORMED = (
    (b"{not json", "bad_json"),
    (b'{"responseId": "X", "commsHubId": 1, "payload": "AAA=", "timestamp": "2023-06-01"}', "bad_timestamp"),
    (b'{"responseId": "X", "commsHubId": 1, "payload": "%%%not base64%%%", "timestamp": "20230601101500.000"}',
     "bad_base64"),
    (b'{"responseId": "X", "commsHubId": 4294967296, "payload": "AAA=", "timestamp": "20230601101500.000"}',
     "bad_comms_hub_id"),
    (b'{"responseId": "X", "commsHubId": 7, "payload": "3wkDAAAA", "timestamp": "20230601101500.000"}', "bad_gbcs"),
)


def _add_faults(rng: random.Random, config: TrafficConfig, traffic: Traffic) -> None:
    """Malformed inputs and duplicates, spread through the run."""
    originals = list(traffic.inputs)
    for i in range(int(len(originals) * config.malformed_share)):
        data, reason = MALFORMED[i % len(MALFORMED)]
        at = rng.randrange(len(traffic.inputs))
        near = traffic.inputs[at]
        unique = data.replace(b'"X"', f'"BAD{config.seed:04d}{i:06d}"'.encode())
        traffic.inputs.insert(at, Inbound(s.IN_CSP_NORTH, unique, dict(near.headers),
                                          f"BAD{config.seed:04d}{i:06d}", "malformed", near.dsp_received,
                                          (reason,)))
    for _ in range(int(len(originals) * config.duplicate_share)):
        original = rng.choice(originals)
        at = min(len(traffic.inputs), traffic.inputs.index(original) + rng.randrange(1, 50))
        traffic.inputs.insert(at, Inbound(original.subject, original.data, original.headers,
                                          original.response_id, "duplicate", original.dsp_received))


@dataclass(frozen=True)
class LogLine:
    """One delivery-log line the DSP writes (as the Service User answered)."""

    data: bytes
    msg_id: str
    su_passed: int


def service_user_answers(delivery_id: str, response_id: str, dcc_alert_code: str | None,
                         service_user_id: str, dsp_received: int, seed: int, *, throttled: bool = False,
                         throttled_count: int | None = None, always_acknowledge: bool = False,
                         late_ms: int = 0) -> list[LogLine]:
    """Deterministic per delivery: the same notice always gets the same answers. A throttled
    delivery is one log line saying so (never passed); a forwarded one that storm protection
    counted repeats for carries ``throttledAlertCount`` on its lines. ``late_ms``: every
    acknowledgement comes that much later (a slow Service User)."""
    if throttled:
        body: dict[str, object] = {
                "deliveryId": delivery_id, "responseId": response_id, "dccAlertCode": dcc_alert_code,
                "serviceUserId": service_user_id, "suPassedTimestamp": None, "suAcknowledgedTimestamp": None,
                "outcome": "throttled"}
        return [LogLine(msgspec.json.encode(body), f"log:{delivery_id}:throttled", dsp_received)]
    digest = hashlib.blake2b(f"{seed}:{delivery_id}".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    passed = dsp_received + rng.randrange(30, 300) + (rng.randrange(50, 400) if dcc_alert_code else 0)
    roll = 0.0 if always_acknowledge else rng.random()
    attempts: list[tuple[int, int | None]] = []
    if roll < 0.90:
        attempts.append((passed, passed + int(rng.lognormvariate(5.5, 0.7)) + late_ms))
    elif roll < 0.97:
        attempts.append((passed, None))
        retry = passed + 30_000
        attempts.append((retry, retry + int(rng.lognormvariate(5.5, 0.7)) + late_ms))
    else:
        attempts.append((passed, None))
        if rng.random() < 0.5:
            attempts.append((passed + 30_000, None))
    lines = []
    for su_passed, acked in attempts:
        body = {
            "deliveryId": delivery_id,
            "responseId": response_id,
            "dccAlertCode": dcc_alert_code,
            "serviceUserId": service_user_id,
            "suPassedTimestamp": format_csp(su_passed),
            "suAcknowledgedTimestamp": format_csp(acked) if acked is not None else None,
            "outcome": "acknowledged" if acked is not None else "failed",
        }
        if throttled_count is not None:
            body["throttledAlertCount"] = throttled_count
        lines.append(LogLine(msgspec.json.encode(body), f"log:{delivery_id}:{su_passed}", su_passed))
    return lines


def shuffled(lines: list[LogLine], seed: int) -> Iterator[LogLine]:
    """The delivery log in a shuffled order (files arrive out of order in real life)."""
    copy = list(lines)
    random.Random(seed).shuffle(copy)
    yield from copy

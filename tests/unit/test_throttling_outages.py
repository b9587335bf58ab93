"""Alert Storm Protection (throttled deliveries), DCC Alert AD1 from CSP power-outage
notifications, and the SIT scenario, through the pure cores."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from alert_timing import report
from alert_timing.ops import docs
from alert_timing.ops.common import event_summary
from alert_timing.ops.trace import Journey, Step, delivery_summaries
from alert_timing.simulator.sit import (
    AFTER_PIPELINE_MS,
    check,
    format_table,
    pipeline_event_time,
    raising_code,
    sit_start,
    sit_traffic,
)
from alert_timing.simulator.traffic import (
    DEFAULT_START,
    Inbound,
    TrafficConfig,
    generate,
    outage_notification,
    service_user_answers,
    storm_protection,
)
from services.csp_enrichment.core import enrich, pass_on
from services.dsp_mapping.core import deliveries, delivery_attempt, outage_deliveries
from services.hub_capture.core import capture
from services.metrics.core import MetricsCore
from services.metrics.files import write_window
from services.runtime.service import Inbound as Msg
from shared import subjects as s
from shared.csp_notifications import NotificationConfigError, PowerOutageShape, from_toml
from shared.csp_notifications import load as load_notifications
from shared.dcc_rules import RuleTable
from shared.events import (
    AlertCaptured,
    AlertEnriched,
    AstRecord,
    ClockTick,
    DeliveryAttempted,
    DeliveryExpected,
    OutageNotified,
    RejectedInput,
    WallClock,
    WindowReport,
)
from shared.settings import Settings
from shared.timefmt import parse_csp, parse_iso
from tests.harness.asyncapi import message_of, resolve, validator

SETTINGS = Settings()
SHAPE = PowerOutageShape()
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
OPERATOR = "90-B3-D5-1F-30-02-00-00"
T0 = parse_iso("2023-06-01T10:00:00Z")


def msg(subject: str, data: bytes, seq: int = 1, dsp: str | None = "20230601101502.500") -> Msg:
    return Msg(subject, data, {"Dsp-Received-Timestamp": dsp} if dsp else {}, seq, 1_700_000_000_000)


def line(**fields: object) -> bytes:
    body: dict[str, object] = {"deliveryId": "D1", "responseId": "R1", "dccAlertCode": None,
                               "serviceUserId": SUPPLIER, "suPassedTimestamp": None,
                               "suAcknowledgedTimestamp": None, "outcome": "throttled"}
    body.update(fields)
    return msgspec.json.encode(body)


# ------------------------------------------------------------------ delivery log lines


def test_throttled_line_has_no_su_times() -> None:
    got = delivery_attempt(msg(s.IN_DSP_DELIVERY, line()), SETTINGS)
    assert isinstance(got, DeliveryAttempted)
    assert (got.outcome, got.su_passed, got.su_acknowledged, got.throttled_count) == ("throttled", None, None, None)


def test_forwarded_line_carries_its_count() -> None:
    got = delivery_attempt(msg(s.IN_DSP_DELIVERY, line(outcome="acknowledged", throttledAlertCount=7,
                                                       suPassedTimestamp="20230601101503.000",
                                                       suAcknowledgedTimestamp="20230601101503.400")), SETTINGS)
    assert isinstance(got, DeliveryAttempted) and got.throttled_count == 7 and got.su_passed is not None
    plain = delivery_attempt(msg(s.IN_DSP_DELIVERY, line(outcome="acknowledged",
                                                         suPassedTimestamp="20230601101503.000",
                                                         suAcknowledgedTimestamp="20230601101503.400")), SETTINGS)
    assert isinstance(plain, DeliveryAttempted) and plain.event_id != got.event_id


@pytest.mark.parametrize(("fields", "reason"), [
    ({"outcome": "discarded"}, "bad_outcome"),
    ({"outcome": None}, "bad_outcome"),
    ({"suPassedTimestamp": "20230601101503.000"}, "bad_field"),  # throttled, yet passed
    ({"throttledAlertCount": 3}, "bad_field"),  # a count belongs to a forwarded alert
    ({"outcome": "failed", "suPassedTimestamp": "20230601101503.000", "throttledAlertCount": -1},
     "bad_throttled_count"),
    ({"outcome": "failed", "suPassedTimestamp": "20230601101503.000", "throttledAlertCount": 2.0},
     "bad_throttled_count"),
    ({"outcome": "failed", "suPassedTimestamp": "20230601101503.000", "throttledAlertCount": "4"},
     "bad_throttled_count"),
    ({"outcome": "failed", "suPassedTimestamp": "20230601101503.000", "throttledAlertCount": True},
     "bad_throttled_count"),
])
def test_bad_lines_are_rejected_whole(fields: dict[str, object], reason: str) -> None:
    data = line(**fields)
    got = delivery_attempt(msg(s.IN_DSP_DELIVERY, data, seq=9), SETTINGS)
    assert isinstance(got, RejectedInput)
    assert (got.reason, got.stage, got.raw, got.source_seq) == (reason, "dsp-mapping", data, 9)


@hsettings(max_examples=150, deadline=None)
@given(st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
                 st.text(max_size=5), st.booleans()))
def test_any_count_is_taken_or_rejected_never_raises(count: object) -> None:
    data = line(outcome="failed", suPassedTimestamp="20230601101503.000", throttledAlertCount=count)
    got = delivery_attempt(msg(s.IN_DSP_DELIVERY, data), SETTINGS)
    good = type(count) is int and 0 <= count <= 2**32 - 1  # type: ignore[operator]
    if good:
        assert isinstance(got, DeliveryAttempted) and got.throttled_count == count
    else:
        assert isinstance(got, RejectedInput) and got.reason == "bad_throttled_count"


# --------------------------------------------------------------- outage notifications


def notification(**fields: object) -> bytes:
    body: dict[str, object] = {"notificationType": "powerOutage", "notificationId": "PO1", "commsHubId": 42,
                               "outageDurationSeconds": 240, "cspReceivedTimestamp": "20230601101500.000",
                               "cspSentTimestamp": "20230601101500.120", "cspRef": "x-1"}
    body.update(fields)
    return msgspec.json.encode({k: v for k, v in body.items() if v is not ...})


@pytest.mark.parametrize("subject", list(s.IN_CSP))
def test_outage_on_any_feed_raises_one_ad1(subject: str) -> None:
    got = capture(msg(subject, notification()), SETTINGS)
    assert isinstance(got, OutageNotified)
    assert got.region == s.IN_CSP[subject] and got.extra == {"cspRef": "x-1"} and got.chf_received is None
    passed = pass_on(got)
    assert passed.event_id != got.event_id and msgspec.structs.replace(passed, event_id=got.event_id) == got
    [ad1] = outage_deliveries(passed, SHAPE)
    assert (ad1.delivery_id, ad1.category, ad1.dcc_alert_code, ad1.alert_code) == (
        "PO1:AD1:1", "dcc_alert", "AD1", None)
    assert ad1.service_user_id == OPERATOR and ad1.originator is None and ad1.message_code is None
    assert (ad1.csp_received, ad1.csp_sent) == (parse_csp("20230601101500.000"), parse_csp("20230601101500.120"))
    assert ad1.chf_received is None and ad1.device_alert_time is None


@hsettings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=366 * 86_400), st.integers(min_value=0, max_value=7_200))
def test_ad1_only_for_outages_at_least_the_threshold(duration: int, threshold: int) -> None:
    shape = PowerOutageShape(min_duration_s=threshold)
    got = capture(msg(s.IN_CSP_SOUTH, notification(outageDurationSeconds=duration)), SETTINGS, shape)
    assert isinstance(got, OutageNotified)
    assert len(outage_deliveries(got, shape)) == (1 if duration >= threshold else 0)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"notificationType": "powerRestored"}, "bad_notification"),
    ({"outageDurationSeconds": -5}, "bad_notification"),
    ({"outageDurationSeconds": 200.5}, "bad_notification"),
    ({"outageDurationSeconds": "240"}, "bad_notification"),
    ({"outageDurationSeconds": ...}, "missing_field"),
    ({"notificationId": ""}, "bad_field"),
    ({"cspSentTimestamp": ...}, "missing_field"),
    ({"cspReceivedTimestamp": "yesterday"}, "bad_timestamp"),
    ({"commsHubId": -1}, "bad_comms_hub_id"),
])
def test_malformed_notifications_are_rejected_whole(fields: dict[str, object], reason: str) -> None:
    data = notification(**fields)
    got = capture(msg(s.IN_CSP_CENTRAL, data, seq=4), SETTINGS)
    assert isinstance(got, RejectedInput)
    assert (got.reason, got.stage, got.raw) == (reason, "hub-capture", data)


def test_notification_shape_is_configuration() -> None:
    shape = from_toml('[power_outage]\ntype_field = "kind"\ntype_value = "outage"\nid_field = "ref"\n'
                      'duration_field = "seconds"\nmin_duration_s = 300\ndcc_alert_code = "AD1"\n')
    data = outage_notification(shape, notification_id="X9", hub_id=7, duration_s=301, chf_received=None,
                               csp_received=T0, csp_sent=T0 + 100)
    assert msgspec.json.decode(data)["kind"] == "outage"
    got = capture(msg(s.IN_CSP_NORTH, data), SETTINGS, shape)
    assert isinstance(got, OutageNotified) and got.response_id == "X9" and got.outage_duration_s == 301
    # the default shape does not know this one: an ordinary alert missing its fields
    assert isinstance(capture(msg(s.IN_CSP_NORTH, data), SETTINGS), RejectedInput)
    assert load_notifications() == SHAPE  # the packaged file says what the defaults say
    for bad in ('[power_outage]\nsurprise = 1\n', '[power_outage]\nmin_duration_s = -1\n',
                '[power_outage]\nservice_user = "nobody"\n', '[power_outage]\nid_field = "commsHubId"\n',
                'schema_version = 2\n', 'not toml ['):
        with pytest.raises(NotificationConfigError):
            from_toml(bad)


# ---------------------------------------------------------------------- metrics core


def expectation(did: str, dsp_ms: int) -> DeliveryExpected:
    return DeliveryExpected(
        event_id=f"exp:{did}", delivery_id=did, response_id=did, region="north", comms_hub_id=1,
        category="device_alert", alert_code="8F57", dcc_alert_code=None, message_code="0x0082",
        originator="00-11-22-33-44-55-66-77", recipient=SUPPLIER, service_user_id=SUPPLIER,
        device_alert_time=dsp_ms - 2_000, chf_received=dsp_ms - 1_500, csp_received=dsp_ms - 200,
        csp_sent=dsp_ms - 150, dsp_received=dsp_ms,
    )


def attempt(did: str, passed: int | None, acked: int | None, count: int | None = None) -> DeliveryAttempted:
    outcome = "throttled" if passed is None else "acknowledged" if acked is not None else "failed"
    return DeliveryAttempted(
        event_id=f"att:{did}:{passed}:{outcome}:{count}", delivery_id=did, response_id=did, dcc_alert_code=None,
        service_user_id=SUPPLIER, su_passed=passed, su_acknowledged=acked, outcome=outcome,  # type: ignore[arg-type]
        throttled_count=count,
    )


def final(events: list[object]) -> tuple[dict[str, AstRecord], dict[str, WindowReport]]:
    core = MetricsCore()
    records: dict[str, AstRecord] = {}
    reports: dict[str, WindowReport] = {}
    for event in events:
        out = core.apply([event])
        records.update({r.delivery_id: r for r in out.records})
        reports.update({c.report.window_start: c.report for c in out.closed})
    return records, reports


def test_throttled_delivery_is_throttled_not_no_handshake_and_out_of_the_legs() -> None:
    events: list[object] = [
        expectation("fwd", T0 + 1_000), attempt("fwd", T0 + 1_100, T0 + 1_400, count=2),
        expectation("t1", T0 + 2_000), attempt("t1", None, None),
        expectation("t2", T0 + 3_000), attempt("t2", None, None),
        expectation("lost", T0 + 4_000),
        ClockTick(event_id="end", time=T0 + 3_600_000),
    ]
    records, reports = final(events)
    assert {k: r.status for k, r in records.items()} == {
        "fwd": "complete", "t1": "throttled", "t2": "throttled", "lost": "no_handshake"}
    t1 = records["t1"]
    assert (t1.su_passed, t1.su_acknowledged, t1.dsp_to_su_ms, t1.su_handshake_ms, t1.end_to_end_ms) == (None,) * 5
    assert t1.csp_to_dsp_ms == 150 and t1.delivery_attempts == 1 and t1.throttled_count is None
    assert records["fwd"].throttled_count == 2
    [row] = [r for r in reports["2023-06-01T10:00:00.000Z"].rows if (r.region, r.category) == ("all", "all")]
    assert (row.alerts, row.complete, row.throttled, row.no_handshake) == (4, 1, 2, 1)
    assert row.legs["csp_to_dsp_ms"].count == 2  # fwd and lost: the throttled two are in no leg
    assert row.legs["end_to_end_ms"].count == 1


def test_throttled_line_before_its_expectation_and_after_the_timeout() -> None:
    # the log line first (no time of its own), then the expectation: throttled at once
    records, _ = final([ClockTick(event_id="c", time=T0), attempt("x", None, None), expectation("x", T0 + 10)])
    assert records["x"].status == "throttled"
    # timed out as no_handshake, then the DSP's throttled line: revised to throttled
    records, _ = final([expectation("y", T0), ClockTick(event_id="c", time=T0 + 900_000),
                        attempt("y", None, None)])
    assert records["y"].status == "throttled" and records["y"].revision == 2


DIDS = ("a", "b", "c")


@st.composite
def storms(draw: st.DrawFn) -> list[object]:
    events: list[object] = []
    for n, did in enumerate(DIDS):
        dsp = T0 + n * 60_000
        events.append(expectation(did, dsp))
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            kind = draw(st.sampled_from(["throttled", "acked", "failed"]))
            count = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=50)))
            passed = dsp + draw(st.integers(min_value=1, max_value=20_000))
            if kind == "throttled":
                events.append(attempt(did, None, None))
            elif kind == "acked":
                events.append(attempt(did, passed, passed + draw(st.integers(min_value=0, max_value=5_000)), count))
            else:
                events.append(attempt(did, passed, None, count))
    return events


@hsettings(max_examples=120, deadline=None)
@given(storms(), st.data())
def test_throttled_is_never_no_handshake_whatever_the_order(events: list[object], data: st.DataObject) -> None:
    end = ClockTick(event_id="end", time=T0 + 7_200_000)
    shuffled = data.draw(st.permutations(events))
    records, reports = final([*shuffled, end])
    reference, _ = final([*events, end])
    assert records.keys() == set(DIDS)
    assert {k: msgspec.structs.replace(r, revision=0) for k, r in records.items()} == {
        k: msgspec.structs.replace(r, revision=0) for k, r in reference.items()}
    for did, record in records.items():
        mine = [e for e in events if isinstance(e, DeliveryAttempted) and e.delivery_id == did]
        throttled = any(e.outcome == "throttled" for e in mine)
        assert (record.status == "throttled") == throttled
        if throttled:
            assert record.su_passed is None and record.end_to_end_ms is None
        counts = [e.throttled_count for e in mine if e.throttled_count is not None]
        assert record.throttled_count == (max(counts) if counts else None)
    totals = [r for rep in reports.values() for r in rep.rows if (r.region, r.category) == ("all", "all")]
    assert sum(r.throttled for r in totals) == sum(r.status == "throttled" for r in records.values())
    assert sum(r.legs["csp_to_dsp_ms"].count for r in totals) == sum(r.status != "throttled" for r in records.values())


# ------------------------------------------------------------------------ simulator


def inbound(rid: str, hub: int, code: str, at_ms: int) -> Inbound:
    return Inbound(subject=s.IN_CSP_NORTH, data=b"", headers={}, response_id=rid, kind="alert",
                   dsp_received=at_ms, deliveries=(rid,), alert_code=code, comms_hub_id=hub, recipient=SUPPLIER)


def test_storm_protection_by_hand() -> None:
    minute = 60_000
    inputs = [
        inbound("a1", 1, "8F57", 0), inbound("a2", 1, "8F57", 1 * minute), inbound("a3", 1, "8F57", 4 * minute),
        inbound("a4", 1, "8F57", 5 * minute),  # a new period: forwarded, carries 2
        inbound("a5", 1, "8F57", 6 * minute),
        inbound("b1", 1, "8F36", 2 * minute),  # another code: its own count
        inbound("c1", 2, "8F57", 2 * minute),  # another device
        inbound("x1", 1, "8F35", 0), inbound("x2", 1, "8F35", 1),  # excluded: never throttled
    ]
    throttled, counts = storm_protection(inputs, 5 * minute, ("8f35",))
    assert throttled == {"a2", "a3", "a5"}
    assert counts == {"a4": 2}


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.sampled_from(["8F57", "8F36"]), st.integers(0, 3_600_000)),
                max_size=40),
       st.integers(min_value=1, max_value=1_800_000))
def test_storm_protection_forwards_one_per_period(spec: list[tuple[int, str, int]], period: int) -> None:
    inputs = [inbound(f"r{n}", hub, code, t) for n, (hub, code, t) in enumerate(spec)]
    throttled, counts = storm_protection(inputs, period)
    forwarded = [i for i in inputs if i.response_id not in throttled]
    # every throttled alert has a forwarded identical one less than a period before it
    for i in inputs:
        if i.response_id in throttled:
            assert any(f.comms_hub_id == i.comms_hub_id and f.alert_code == i.alert_code
                       and 0 <= i.dsp_received - f.dsp_received < period for f in forwarded)
    # the counts account for every throttled alert but those of each pair's last period
    assert sum(counts.values()) <= len(throttled)
    assert all(v > 0 for v in counts.values()) and set(counts) <= {f.response_id for f in forwarded}


def pipeline(traffic_inputs: list[Inbound], answers: dict[str, object], seed: int,
             rules: RuleTable, always_acknowledge: bool = False) -> dict[str, AstRecord]:
    """The traffic through the four pure cores, the Service Users answering as the simulator does."""
    expected: list[DeliveryExpected] = []
    for n, i in enumerate(traffic_inputs, start=1):
        got = capture(Msg(i.subject, i.data, i.headers, n, 0), SETTINGS)
        if isinstance(got, OutageNotified):
            expected += outage_deliveries(pass_on(got), SHAPE)
        elif isinstance(got, AlertCaptured):
            alert = enrich(got)
            if isinstance(alert, AlertEnriched):
                expected += deliveries(alert, rules)[0]
    events: list[object] = list(expected)
    for e in expected:
        for log_line in service_user_answers(e.delivery_id, e.response_id, e.dcc_alert_code, e.service_user_id,
                                             e.dsp_received, seed, always_acknowledge=always_acknowledge,
                                             **answers.get(e.delivery_id, {})):  # type: ignore[arg-type]
            got = delivery_attempt(Msg(s.IN_DSP_DELIVERY, log_line.data, {}, 1, 0), SETTINGS)
            assert isinstance(got, DeliveryAttempted), got
            events.append(got)
    last = max(e.dsp_received for e in expected)
    out = MetricsCore().apply([*events, ClockTick(event_id="end", time=last + 3_600_000)])
    records: dict[str, AstRecord] = {}
    for r in out.records:
        records[r.delivery_id] = r
    return records


def test_simulated_storm_is_throttled_and_outages_raise_ad1() -> None:
    rules = RuleTable.load(None)
    traffic = generate(TrafficConfig(alerts=2_000, seed=5, span_ms=6 * 3_600_000, storm_at_ms=3_600_000,
                                     outage_share=0.01), rules, SHAPE)
    assert traffic.throttled and any(v > 0 for v in traffic.throttled_counts.values())
    assert {i.alert_code for i in traffic.inputs if i.response_id in traffic.throttled}.isdisjoint({"8F35", "8F36"})
    answers = {d: {"throttled": d in traffic.throttled, "throttled_count": traffic.throttled_counts.get(d)}
               for d in traffic.expected_deliveries}
    records = pipeline(traffic.inputs, answers, 5, rules)
    assert set(records) == traffic.expected_deliveries
    throttled = {k for k, r in records.items() if r.status == "throttled"}
    assert throttled == traffic.throttled
    assert {k: r.throttled_count for k, r in records.items() if r.throttled_count is not None} == \
        traffic.throttled_counts
    ad1 = [r for r in records.values() if r.dcc_alert_code == "AD1"]
    outages = [i for i in traffic.inputs if i.kind == "outage"]
    assert ad1 and len(ad1) == sum(len(i.deliveries) for i in outages) < len(outages)
    assert all(r.category == "dcc_alert" and r.service_user_id == OPERATOR and r.device_alert_time is None
               for r in ad1)


def test_sit_scenario_through_the_cores_passes_and_fails_when_a_record_is_missing() -> None:
    rules = RuleTable.load(None)
    traffic, cases = sit_traffic(rules, SHAPE, seed=2)
    samples = {c.sample.split()[0] for c in cases}
    assert samples == {"AD1", "8F3F", "810D", "8F0F", "8F72", "N39", "N53", "N54", "N62"}
    assert all(c.sent >= 2 for c in cases)
    assert {c.device_type for c in cases if c.sample.startswith("8F3F")} == {"ESME", "GSME"}
    assert {c.device_type for c in cases if c.sample.startswith("AD1")} == {"CSP north", "CSP central", "CSP south"}
    assert traffic.always_acknowledge
    records = pipeline(traffic.inputs, {}, 2, rules, always_acknowledge=True)
    rows = check(cases, {k: r for k, r in records.items()})
    assert all(r.passed for r in rows), format_table(rows)
    gone = next(iter(sorted(records)))
    rows = check(cases, {k: r for k, r in records.items() if k != gone})
    assert sum(not r.passed for r in rows) >= 1 and "FAIL" in format_table(rows)


def test_sit_samples_start_after_a_used_pipelines_event_time() -> None:
    """A fresh pipeline: 2023-06-01 00:00. A used one: after the latest time its metrics inputs
    moved to, plus the wall time since (a quiet pipeline's event time follows the wall clock)."""
    assert sit_start(pipeline_event_time([], now_ms=10**13)) == DEFAULT_START
    ten = DEFAULT_START + 10 * 3_600_000
    tick = ClockTick(event_id="c", time=ten)
    wall = WallClock(event_id="w", partition=0, alert_clock=ten + 5_000, log_clock=ten + 9_000)
    stored = 1_700_000_000_000
    # stored just now: the events' own latest time
    assert pipeline_event_time([([tick], stored), ([wall], stored)], now_ms=stored) == ten + 9_000
    # a quiet hour since the last one was stored
    assert pipeline_event_time([([tick], stored), ([wall], stored - 5_000)], now_ms=stored + 3_600_000) == \
        ten + 9_000 + 3_605_000
    assert pipeline_event_time([([], stored)], now_ms=stored) is None
    start = sit_start(ten)
    assert start == ten + AFTER_PIPELINE_MS
    traffic, _ = sit_traffic(RuleTable.load(None), SHAPE, start_ms=start)
    assert min(traffic.dsp_received.values()) > ten
    assert sit_start(DEFAULT_START - 10**9) == DEFAULT_START  # never earlier than the default


def test_sit_scenario_follows_the_rule_table() -> None:
    rules = RuleTable.from_toml('[device_alerts.8F12]\ndcc_alerts = ["N53", "N62"]\n'
                                '[device_alerts.8F3F]\ndcc_alerts = ["N39"]\n')
    assert (raising_code(rules, "N39"), raising_code(rules, "N62"), raising_code(rules, "N54")) == (
        "8F3F", "8F12", None)
    _, cases = sit_traffic(rules, SHAPE)
    rows = check(cases, {})
    n54 = [r for r in rows if r.sample.startswith("N54")]
    assert n54 and all(not r.passed and "no rule" in r.note for r in n54)


# ------------------------------------------------------------------------ the document


def test_asyncapi_documents_the_notification_and_throttled_lines() -> None:

    doc = docs.asyncapi_document()
    for channel in ("inCspNorth", "inCspCentral", "inCspSouth"):
        outage_schema = message_of(doc, channel, "CspPowerOutage")["payload"]
        check = validator(doc, outage_schema)
        body = msgspec.json.decode(notification())
        check.validate(body)
        assert "ILLUSTRATIVE" in resolve_schema(doc, outage_schema)["description"]
        assert not check.is_valid({**body, "outageDurationSeconds": -1})
        accepted = capture(msg(s.IN_CSP_NORTH, notification()), SETTINGS)
        assert isinstance(accepted, OutageNotified)
    log = validator(doc, message_of(doc, "inDspDelivery")["payload"])
    log.validate(msgspec.json.decode(line()))
    log.validate(msgspec.json.decode(line(outcome="acknowledged", suPassedTimestamp="20230601101503.000",
                                          suAcknowledgedTimestamp="20230601101503.400", throttledAlertCount=3)))
    for fields in ({"throttledAlertCount": 3}, {"outcome": "discarded"}, {"suPassedTimestamp": "20230601101503.000"},
                   {"outcome": "failed", "suPassedTimestamp": "20230601101503.000", "throttledAlertCount": -1}):
        assert not log.is_valid(msgspec.json.decode(line(**fields)))
        assert isinstance(delivery_attempt(msg(s.IN_DSP_DELIVERY, line(**fields)), SETTINGS), RejectedInput)


def resolve_schema(doc: dict, schema: dict) -> dict:

    return resolve(doc, schema["$ref"]) if "$ref" in schema else schema


# -------------------------------------------------------------------- files and report


def test_files_and_report_count_throttled_apart(tmp_path: object) -> None:
    import csv
    from pathlib import Path

    import pyarrow.parquet as pq


    root = Path(str(tmp_path))
    events: list[object] = [
        expectation("ok", T0 + 1_000), attempt("ok", T0 + 1_100, T0 + 1_400, count=4),
        expectation("t1", T0 + 2_000), attempt("t1", None, None),
        expectation("t2", T0 + 3_000), attempt("t2", None, None),
        ClockTick(event_id="end", time=T0 + 3_600_000),
    ]
    out = MetricsCore().apply(events)
    for closed in out.closed:
        write_window(root / "data", closed)
    table = [r for parquet in (root / "data" / "ast").rglob("*.parquet") for r in pq.read_table(parquet).to_pylist()]
    assert {r["delivery_id"]: (r["status"], r["throttled_count"]) for r in table} == {
        "ok": ("complete", 4), "t1": ("throttled", None), "t2": ("throttled", None)}
    got = report.build_report(root / "data", T0 - 3_600_000, T0 + 7_200_000, root / "out", progress=False)
    assert got["records"] == 3
    with open(root / "out" / "summary.csv", newline="") as fh:
        [summary] = list(csv.DictReader(fh))
    assert (summary["alerts"], summary["complete"], summary["throttled"], summary["no_handshake"]) == (
        "3", "1", "2", "0")
    assert summary["csp_to_dsp_ms_count"] == "1"  # the throttled two are in no leg
    html = (root / "out" / "index.html").read_text()
    assert "throttled" in html


def test_trace_says_throttled_not_no_handshake() -> None:
    exp_event = msgspec.json.decode(msgspec.json.encode(expectation("T9", T0)))
    throttled = msgspec.json.decode(msgspec.json.encode(attempt("T9", None, None)))
    failed = msgspec.json.decode(msgspec.json.encode(attempt("T9", T0 + 100, None)))
    def step(kind: str, data: dict, seq: int) -> Step:
        return Step(time_ms=T0, stream=s.STREAM_EVENTS, seq=seq, subject="ast.x", kind=kind, data=data)

    journey = Journey("T9", steps=[step("delivery_expected", exp_event, 1), step("delivery_attempted", failed, 2),
                                   step("delivery_attempted", throttled, 3)])
    [summary] = delivery_summaries(journey)
    assert summary["status"] == "throttled"
    assert summary["timing_points"]["su_passed"] is None and summary["legs_ms"]["dsp_to_su"] is None
    journey.steps.pop()
    assert delivery_summaries(journey)[0]["status"] == "no_handshake"


def test_tail_reads_the_new_event_and_field() -> None:
    note = capture(msg(s.IN_CSP_SOUTH, notification()), SETTINGS)
    text = event_summary(msgspec.json.decode(msgspec.json.encode(note)))
    assert text.startswith("outage_notified response_id=PO1 region=south hub=42 outage_s=240")
    forwarded = msgspec.json.decode(msgspec.json.encode(attempt("F1", T0, T0 + 5, count=6)))
    assert event_summary(forwarded).endswith("throttled_count=6")
    assert "outcome=throttled" in event_summary(msgspec.json.decode(msgspec.json.encode(attempt("F2", None, None))))

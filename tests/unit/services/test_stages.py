"""The pure cores of hub-capture, csp-enrichment and dsp-mapping."""

from __future__ import annotations

import base64

import msgspec
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from services.csp_enrichment.core import enrich
from services.dsp_mapping.core import clock_tick, deliveries, delivery_attempt, notice
from services.hub_capture.core import capture
from shared import subjects as s
from shared.dcc_rules import RuleTable
from shared.events import (
    AlertCaptured,
    AlertEnriched,
    DeliveryAttempted,
    RejectedInput,
    ServiceResponseSeen,
    encoder,
)
from shared.settings import Settings
from shared.timefmt import parse_csp
from tests.harness.frames import ACB_EUI, SUPPLIER, alert_payload, delivery_line, feed, inbound, north, response_payload

SETTINGS = Settings()
RULES = RuleTable.from_toml('schema_version = 1\ndefault_service_user = "90-B3-D5-1F-30-01-00-00"\n'
                            '[default]\ndcc_alerts = []\n[device_alerts.8F3F]\ndcc_alerts = ["N39", "N54"]\n')


def captured(data: bytes, subject: str = s.IN_CSP_NORTH, **kw) -> AlertCaptured:
    event = capture(inbound(subject, data, **kw), SETTINGS)
    assert isinstance(event, AlertCaptured), event
    return event


def test_north_with_hub_timestamp():
    event = captured(north("R1", rniVersion="4.2"))
    assert event.response_id == "R1" and event.region == "north"
    assert event.chf_received == parse_csp("20230601101500.100")
    assert event.csp_sent == parse_csp("20230601101502.450")
    assert event.csp_received is None
    assert event.dsp_received == parse_csp("20230601101502.500")
    assert event.dsp_received_source == "header"
    assert event.extra == {"rniVersion": "4.2"}  # unknown fields kept
    assert event.event_id == "cap:north:R1"


def test_north_without_hub_timestamp_and_stream_time():
    event = captured(north("R2", hub=None), dsp=None, stream_time_ms=1_685_614_503_000)
    assert event.chf_received is None
    assert event.dsp_received == 1_685_614_503_000 and event.dsp_received_source == "stream"


def test_central_feed():
    event = captured(feed("C1"), s.IN_CSP_CENTRAL)
    assert event.region == "central"
    assert event.csp_received == parse_csp("20230601101501.800")
    assert event.csp_sent == parse_csp("20230601101502.000")


@pytest.mark.parametrize("data, reason", [
    (b"{not json", "bad_json"),
    (b"[1, 2]", "bad_json"),
    (b"", "bad_json"),
    (north("R", timestamp="2023-06-01 10:15"), "bad_timestamp"),
    (north("R", hub="20231301000000.000"), "bad_timestamp"),
    (north("R", payload="***"), "bad_base64"),
    (msgspec.json.encode({"responseId": "R", "commsHubId": 2**32, "payload": "AAAA",
                          "timestamp": "20230601101500.000"}), "bad_comms_hub_id"),
    (msgspec.json.encode({"responseId": "R", "commsHubId": -1, "payload": "AAAA",
                          "timestamp": "20230601101500.000"}), "bad_comms_hub_id"),
    (msgspec.json.encode({"responseId": "R", "commsHubId": True, "payload": "AAAA",
                          "timestamp": "20230601101500.000"}), "bad_comms_hub_id"),
    (msgspec.json.encode({"commsHubId": 1, "payload": "AAAA", "timestamp": "20230601101500.000"}), "missing_field"),
    (b"{" + b'"a":' * 0 + b'"x": ' + b"[" * 20 + b"]" * 20 + b"}", "too_deep"),
    (north("R", payload="A" * 70_000), "oversize_payload"),
    (b" " * 300_000, "oversize"),
])
def test_rejections_keep_the_input_whole(data, reason):
    msg = inbound(s.IN_CSP_NORTH, data, seq=42)
    event = capture(msg, SETTINGS)
    assert isinstance(event, RejectedInput)
    assert event.reason == reason
    assert event.raw == data and event.subject == s.IN_CSP_NORTH and event.stage == "hub-capture"
    assert event.headers == msg.headers
    assert event.event_id == "rej:hub-capture:ast.in.csp-north:42"
    # and the rejection survives the wire with its bytes
    assert msgspec.json.decode(encoder.encode(event), type=RejectedInput).raw == data


def test_bad_dsp_header_is_rejected():
    event = capture(inbound(s.IN_CSP_NORTH, north(), dsp="yesterday"), SETTINGS)
    assert isinstance(event, RejectedInput) and event.reason == "bad_timestamp"


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_capture_never_raises(data):
    assert isinstance(capture(inbound(s.IN_CSP_NORTH, data), SETTINGS), (AlertCaptured, RejectedInput))


@hsettings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["responseId", "commsHubId", "payload", "timestamp", "HubTimestamp", "x"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=30), st.booleans(),
                                 st.lists(st.integers(), max_size=3))))
def test_capture_never_raises_on_json(obj):
    result = capture(inbound(s.IN_CSP_NORTH, msgspec.json.encode(obj)), SETTINGS)
    assert isinstance(result, (AlertCaptured, RejectedInput))


def test_enrich_north_maps_csp_received_with_offset_and_says_so():
    event = captured(north("R1"))
    enriched = enrich(event, csp_north_offset_ms=350)
    assert isinstance(enriched, AlertEnriched)
    assert enriched.csp_received == parse_csp("20230601101502.100")  # 502.450 - 350 ms
    assert "csp_received_mapped" in enriched.flags
    assert enriched.alert_code == "8F3F" and enriched.recipient == SUPPLIER
    # the device's own alert time from the DLMS date-time: 2023-06-01T10:14:58Z
    assert enriched.device_alert_time == parse_csp("20230601101458.000")


def test_enrich_central_keeps_feed_times():
    enriched = enrich(captured(feed("C1"), s.IN_CSP_CENTRAL))
    assert isinstance(enriched, AlertEnriched)
    assert enriched.csp_received == parse_csp("20230601101501.800")
    assert "csp_received_mapped" not in enriched.flags


def test_service_response_is_passed_over():
    seen = enrich(captured(north("R9", payload=response_payload())))
    assert isinstance(seen, ServiceResponseSeen) and seen.cra_flag == "response"


def test_bad_gbcs_is_rejected_with_the_captured_event():
    event = captured(north("R7", payload=base64.b64encode(b"\xdf\x09\x03garbage").decode()))
    rejected = enrich(event)
    assert isinstance(rejected, RejectedInput) and rejected.reason == "bad_gbcs"
    assert msgspec.json.decode(rejected.raw)["response_id"] == "R7"


def test_device_alert_to_a_user_is_delivered_as_is():
    alert = enrich(captured(north("R1")))
    made, flags = deliveries(alert, RULES)
    assert [d.delivery_id for d in made] == ["R1"] and not flags
    assert made[0].category == "device_alert" and made[0].service_user_id == SUPPLIER
    assert notice(made[0]).dcc_alert_code is None


def test_alert_to_the_acb_fans_out():
    alert = enrich(captured(north("R5", payload=alert_payload("8F3F", recipient=ACB_EUI))))
    made, _ = deliveries(alert, RULES)
    assert [d.delivery_id for d in made] == ["R5:N39:1", "R5:N54:2"]
    assert {d.response_id for d in made} == {"R5"} and {d.category for d in made} == {"dcc_alert"}
    wire = msgspec.json.decode(encoder.encode(notice(made[1])))
    assert wire == {"v": 1, "deliveryId": "R5:N54:2", "responseId": "R5", "dccAlertCode": "N54",
                    "serviceUserId": SUPPLIER}


def test_alert_to_the_acb_without_rule_makes_no_delivery():
    alert = enrich(captured(north("R6", payload=alert_payload("8F72", recipient=ACB_EUI))))
    made, flags = deliveries(alert, RULES)
    assert made == [] and flags == ["no_dcc_rule"]


def test_delivery_log_lines():
    ok = delivery_attempt(inbound(s.IN_DSP_DELIVERY, delivery_line("D1", "R1", passed="20230601101503.000",
                                                                    acked="20230601101503.400")), SETTINGS)
    assert isinstance(ok, DeliveryAttempted) and ok.su_acknowledged - ok.su_passed == 400
    failed = delivery_attempt(inbound(s.IN_DSP_DELIVERY, delivery_line("D1", "R1", passed="20230601101503.000",
                                                                        acked=None)), SETTINGS)
    assert isinstance(failed, DeliveryAttempted) and failed.outcome == "failed" and failed.event_id != ok.event_id
    bad = delivery_attempt(inbound(s.IN_DSP_DELIVERY, delivery_line("D1", "R1", passed="x", acked=None)), SETTINGS)
    assert isinstance(bad, RejectedInput) and bad.stage == "dsp-mapping" and bad.reason == "bad_timestamp"
    wrong = delivery_attempt(inbound(s.IN_DSP_DELIVERY, delivery_line("D1", "R1", passed="20230601101503.000",
                                                                       acked=None, dcc="N99")), SETTINGS)
    assert isinstance(wrong, RejectedInput) and wrong.reason == "bad_field"


def test_clock_tick():
    tick = clock_tick(inbound(s.IN_DSP_CLOCK, b'{"time": "20230601120000.000"}'), SETTINGS)
    assert tick.time == parse_csp("20230601120000.000")
    assert isinstance(clock_tick(inbound(s.IN_DSP_CLOCK, b"{}"), SETTINGS), RejectedInput)

"""docs/asyncapi.json: current, complete, and its schemas are real JSON Schemas that the
events the services emit (and the inputs the services accept) validate against."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import msgspec
import pytest

from alert_timing import ops
from alert_timing.ops import docs
from services.dsp_mapping.core import delivery_attempt
from services.hub_capture.core import capture
from shared import bus
from shared import events as ev
from shared import subjects as s
from shared.events import RejectedInput
from shared.settings import Settings
from tests.harness.asyncapi import message_of, resolve, validator
from tests.harness.frames import SUPPLIER, delivery_line, feed, inbound, north

ROOT = Path(__file__).resolve().parents[4]
DOC_PATH = ROOT / "docs" / "asyncapi.json"


@pytest.fixture(scope="module")
def doc() -> dict:
    return docs.asyncapi_document()


def subject_constants() -> dict[str, str]:
    return {k: v for k, v in vars(s).items() if k.isupper() and isinstance(v, str) and v.startswith("ast.")}


def pattern(address: str) -> str:
    return ".".join("*" if t.startswith("{") else t for t in address.split("."))


def payload_validator(doc: dict, channel_id: str) -> jsonschema.Draft202012Validator:
    return validator(doc, message_of(doc, channel_id)["payload"])


def as_json(struct: object) -> object:
    return msgspec.json.decode(msgspec.json.encode(struct))


# --------------------------------------------------------------------------- current and deterministic


def test_document_on_disk_is_current():
    assert DOC_PATH.exists(), "docs/asyncapi.json is missing: run `alert-timing docs`"
    assert DOC_PATH.read_text(encoding="utf-8") == docs.render_asyncapi(), \
        "docs/asyncapi.json is stale: run `alert-timing docs`"


def test_rendering_is_deterministic_sorted_with_trailing_newline():
    text = docs.render_asyncapi()
    assert text == docs.render_asyncapi()
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_docs_command_writes_and_checks(tmp_path, capsys):
    out = tmp_path / "docs" / "asyncapi.json"
    assert ops.main(["docs", "--out", str(out), "--check"]) == 1  # not there yet
    assert ops.main(["docs", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == docs.render_asyncapi()
    assert ops.main(["docs", "--out", str(out), "--check"]) == 0
    out.write_text(out.read_text(encoding="utf-8").replace("ast.record", "ast.recordx", 1), encoding="utf-8")
    assert ops.main(["docs", "--out", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert "out of date" in err and "Traceback" not in err


# --------------------------------------------------------------------------- structure


def test_basic_structure(doc):
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "alert-timing" and doc["info"]["version"]
    assert doc["defaultContentType"] == "application/json"
    assert {server["protocol"] for server in doc["servers"].values()} == {"nats"}
    messages = doc["components"]["messages"]
    for channel_id, channel in doc["channels"].items():
        assert channel["address"].startswith("ast."), channel_id
        assert channel["messages"], channel_id
        for ref in channel["messages"].values():
            assert resolve(doc, ref["$ref"]) in messages.values()
        params = {t[1:-1] for t in channel["address"].split(".") if t.startswith("{")}
        assert params == set(channel.get("parameters", {})), channel_id
        assert channel["x-jetstream-stream"] in s.STREAM_SUBJECTS, channel_id
    for op_id, op in doc["operations"].items():
        assert op["action"] in ("send", "receive"), op_id
        channel_ref = op["channel"]["$ref"]
        channel = resolve(doc, channel_ref)
        for ref in op["messages"]:
            assert ref["$ref"].startswith(channel_ref + "/messages/"), op_id
            assert resolve(doc, ref["$ref"]) is not None
        assert op["tags"], op_id


def test_every_subject_has_a_channel(doc):
    addresses = [c["address"] for c in doc["channels"].values()]
    for name, subject in subject_constants().items():
        assert any(a == subject or a.startswith(subject + ".{") for a in addresses), f"{name} = {subject}"
    patterns = {pattern(a) for a in addresses}
    for stream, subjects in s.STREAM_SUBJECTS.items():
        for subj in subjects:
            if subj.endswith(">"):
                assert any(p.startswith(subj[:-1]) for p in patterns), (stream, subj)
            else:
                assert subj in patterns, (stream, subj)


def test_every_consumer_and_sender_is_an_operation(doc):
    received = {(op["tags"][0]["name"], pattern(resolve(doc, op["channel"]["$ref"])["address"]))
                for op in doc["operations"].values() if op["action"] == "receive"}
    for spec in bus.consumer_specs(1):
        for subject in spec.filter_subjects:
            assert any(service == spec.service and s.subject_matches(p, subject)
                       for service, p in received), (spec.durable, subject)
    senders = {op["tags"][0]["name"] for op in doc["operations"].values() if op["action"] == "send"}
    assert set(s.SERVICES) <= senders


def test_messages_carry_their_schema_version(doc):
    for name, message in doc["components"]["messages"].items():
        assert message["contentType"] == "application/json"
        if message["headers"]["$ref"].endswith("/EventHeaders"):
            assert message["x-schema-version"] == ev.SCHEMA_VERSION, name
            payload = resolve(doc, message["payload"]["$ref"])
            assert "v" in payload["properties"], name


# --------------------------------------------------------------------------- schemas


def test_every_schema_is_a_valid_json_schema(doc):
    for _name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
    for _name, message in doc["components"]["messages"].items():
        validator(doc, message["payload"])
        validator(doc, message["headers"])


def test_message_examples_validate(doc):
    count = 0
    for _name, message in doc["components"]["messages"].items():
        for example in message.get("examples", []):
            validator(doc, message["payload"]).validate(example["payload"])
            if "headers" in example:
                validator(doc, message["headers"]).validate(example["headers"])
            count += 1
    assert count >= 4


T = 1_685_614_500_100  # 2023-06-01T10:15:00.100Z

CAPTURED = ev.AlertCaptured(event_id="cap:north:R1", response_id="R1", region="north", comms_hub_id=4_000_000_001,
                            payload="3wkD", chf_received=T, csp_received=None, csp_sent=T + 2350,
                            dsp_received=T + 2400, dsp_received_source="header", source_seq=7,
                            extra={"routing": "x"}, trace="00-abc-def-01")
ENRICHED = ev.AlertEnriched(event_id="enr:north:R1", response_id="R1", region="north", comms_hub_id=1,
                            message_code="1000", alert_code="8F3F", originator="00-DB-12-34-56-78-9A-BC",
                            recipient=SUPPLIER, device_alert_time=T - 2100, chf_received=None,
                            csp_received=T, csp_sent=T, dsp_received=T + 50, flags=("csp_received_mapped",))
SEEN = ev.ServiceResponseSeen(event_id="resp:north:R2", response_id="R2", region="north", cra_flag="response",
                              message_code="0001", dsp_received=T)
EXPECTED = ev.DeliveryExpected(event_id="exp:R1:N39:1", delivery_id="R1:N39:1", response_id="R1", region="south",
                               comms_hub_id=3, category="dcc_alert", alert_code="8F3F", dcc_alert_code="N39",
                               message_code="1000", originator="a", recipient="b", service_user_id=SUPPLIER,
                               device_alert_time=None, chf_received=T, csp_received=T, csp_sent=T,
                               dsp_received=T)
ATTEMPTED = ev.DeliveryAttempted(event_id="att:R1", delivery_id="R1", response_id="R1", dcc_alert_code=None,
                                 service_user_id=SUPPLIER, su_passed=T, su_acknowledged=None, outcome="failed")
TICK = ev.ClockTick(event_id="clock:1", time=T)
WALL = ev.WallClock(event_id="wall-clock:0:1:1", partition=0, alert_clock=T, log_clock=T - 1_800_000)

ENVELOPES = {
    "captured": CAPTURED, "enriched": ENRICHED, "responseSeen": SEEN,
    "expected": EXPECTED, "attempted": ATTEMPTED, "clock": TICK, "wallClock": WALL,
}


@pytest.mark.parametrize("channel_id", sorted(ENVELOPES))
def test_envelopes_built_with_the_structs_validate(doc, channel_id):
    check = payload_validator(doc, channel_id)
    event = ENVELOPES[channel_id]
    check.validate(as_json(ev.Batch(events=[event, event])))
    # the envelope of a subject carries only its own event type
    other = CAPTURED if channel_id != "captured" else ENRICHED
    assert not check.is_valid(as_json(ev.Batch(events=[other])))
    assert not check.is_valid({"v": 1})


def test_contract_objects_built_with_the_structs_validate(doc):
    payload_validator(doc, "deliver").validate(as_json(ev.DeliverNotice(
        delivery_id="R1", response_id="R1", dcc_alert_code=None, service_user_id=SUPPLIER)))
    record = ev.AstRecord(
        delivery_id="R1", response_id="R1", revision=1, region="north", comms_hub_id=1, category="device_alert",
        alert_code="8F3F", alert_name="Unauthorised Physical Access", dcc_alert_code=None, message_code="1000",
        originator="a", recipient=SUPPLIER, service_user_id=SUPPLIER, device_alert_time=None,
        chf_received="2023-06-01T10:15:00.100Z", csp_received="2023-06-01T10:15:02.450Z",
        csp_sent="2023-06-01T10:15:02.450Z", dsp_received="2023-06-01T10:15:02.500Z",
        su_passed="2023-06-01T10:15:02.700Z", su_acknowledged="2023-06-01T10:15:03.100Z",
        hub_to_csp_ms=2350, csp_to_dsp_ms=50, dsp_to_su_ms=200, su_handshake_ms=400, end_to_end_ms=3000,
        status="complete", flags=["csp_received_mapped"], delivery_attempts=1)
    payload_validator(doc, "record").validate(as_json(record))
    assert not payload_validator(doc, "record").is_valid({**as_json(record), "status": "lost"})
    rejected = RejectedInput(event_id="rej:hub-capture:ast.in.csp-north:3", stage="hub-capture", reason="bad_json",
                             message="not JSON", subject=s.IN_CSP_NORTH, headers={"a": "b"}, raw=b"\x00{oops",
                             source_seq=3, dsp_received=T)
    payload_validator(doc, "rejected").validate(as_json(rejected))
    payload_validator(doc, "deadLetter").validate(as_json(rejected))


def test_window_report_built_with_the_structs_validates(doc):
    sketch = ev.SketchBins(relative_accuracy=0.01, gamma=1.0202, bins={-3: 1, 250: 4}, zero_count=1)
    leg = ev.LegStats(count=6, p50=200.0, p90=400.0, p95=400.0, p99=400.0, min=0, max=410, sum=1500, sketch=sketch)
    row = ev.ReportRow(region="all", category="all", alerts=6, complete=5, no_handshake=1, incomplete=0,
                       missing_hub_timestamp=1, clock_skew=0, delivery_without_alert=0, service_responses_seen=2,
                       rejected=1, legs={"end_to_end_ms": leg})
    report = ev.WindowReport(window_start="2023-06-01T10:15:00.000Z", window_end="2023-06-01T10:30:00.000Z",
                             revision=2, sketch_relative_accuracy=0.01, rows=[row])
    payload_validator(doc, "report15m").validate(as_json(report))


# --------------------------------------------------------------------------- inbound schemas agree with the services


SETTINGS = Settings()

NORTH_CASES = [
    north("R1"),
    north("R2", hub=None),
    north("R3", routing={"x": 1}),  # other fields are kept, not rejected
    north("R4", timestamp="2023-06-01T10:15:02"),
    north("R5", hub="20230601101500"),
    north("R6", commsHubId=2**32),
    north("R7", commsHubId=-1),
    north("R8", commsHubId="12"),
    msgspec.json.encode({"commsHubId": 1, "payload": "3wkD", "timestamp": "20230601101502.450"}),
    msgspec.json.encode({"responseId": "", "commsHubId": 1, "payload": "3wkD", "timestamp": "20230601101502.450"}),
    msgspec.json.encode({"responseId": "R9", "commsHubId": 1, "payload": "3wkD"}),
    msgspec.json.encode({"responseId": "R10", "commsHubId": 1, "timestamp": "20230601101502.450"}),
]
FEED_CASES = [
    feed("C1"),
    feed("C2", chf=None),
    feed("C3", received="20230601"),
    msgspec.json.encode({"messageId": "C4", "commsHubId": 12, "payload": "3wkD",
                         "cspReceivedTimestamp": "20230601101501.800"}),
]
LOG_CASES = [
    delivery_line("R1", "R1", passed="20230601101502.700", acked="20230601101503.100"),
    delivery_line("R1", "R1", passed="20230601101502.700", acked=None),
    delivery_line("R1:N39:1", "R1", passed="20230601101502.700", acked="20230601101503.100", dcc="N39"),
    delivery_line("R1:N99:1", "R1", passed="20230601101502.700", acked="20230601101503.100", dcc="N99"),
    delivery_line("R1", "R1", passed="bad", acked=None),
    msgspec.json.encode({"deliveryId": "R1", "responseId": "R1", "serviceUserId": SUPPLIER,
                         "suPassedTimestamp": "20230601101502.700", "outcome": "acknowledged"}),
    msgspec.json.encode({"deliveryId": "R1", "responseId": "R1", "serviceUserId": SUPPLIER,
                         "suPassedTimestamp": "20230601101502.700", "outcome": "maybe"}),
]


@pytest.mark.parametrize("subject, channel_id, data", [
    *[(s.IN_CSP_NORTH, "inCspNorth", d) for d in NORTH_CASES],
    *[(s.IN_CSP_CENTRAL, "inCspCentral", d) for d in FEED_CASES],
    *[(s.IN_CSP_SOUTH, "inCspSouth", d) for d in FEED_CASES],
])
def test_csp_schemas_accept_what_hub_capture_accepts(doc, subject, channel_id, data):
    accepted = not isinstance(capture(inbound(subject, data), SETTINGS), RejectedInput)
    assert payload_validator(doc, channel_id).is_valid(msgspec.json.decode(data)) == accepted, data


@pytest.mark.parametrize("data", LOG_CASES)
def test_delivery_log_schema_accepts_what_dsp_mapping_accepts(doc, data):
    accepted = not isinstance(delivery_attempt(inbound(s.IN_DSP_DELIVERY, data), SETTINGS), RejectedInput)
    assert payload_validator(doc, "inDspDelivery").is_valid(msgspec.json.decode(data)) == accepted, data


def test_clock_heartbeat_schema(doc):
    check = payload_validator(doc, "inDspClock")
    assert check.is_valid({"time": "20230601103000.000"})
    assert not check.is_valid({"time": "2023-06-01T10:30:00Z"})
    assert not check.is_valid({})

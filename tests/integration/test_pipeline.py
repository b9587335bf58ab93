"""The whole chain on a real nats-server: inputs in, AST records and rejections out."""

from __future__ import annotations

import msgspec
import pytest

from shared import subjects as s
from tests.harness.frames import ACB_EUI, SUPPLIER, alert_payload, delivery_line, feed, north, response_payload
from tests.harness.jetstream import collect, decoded, drained, send

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]

DSP = {"Dsp-Received-Timestamp": "20230601101502.500"}


async def records_for(js, response_id: str, n: int, timeout: float = 30.0) -> list[dict]:
    msgs = await collect(js, s.STREAM_OUT, [s.RECORD],
                         lambda got: sum(1 for r in decoded(got) if r["response_id"] == response_id) >= n,
                         timeout)
    return [r for r in decoded(msgs) if r["response_id"] == response_id]


async def deliveries_for(js, response_id: str, n: int, timeout: float = 30.0) -> list[dict]:
    msgs = await collect(js, s.STREAM_EVENTS, [s.DELIVER],
                         lambda got: sum(1 for d in decoded(got) if d["responseId"] == response_id) >= n,
                         timeout)
    return [d for d in decoded(msgs) if d["responseId"] == response_id]


async def acknowledge(js, delivery: dict, passed: str = "20230601101502.700",
                      acked: str = "20230601101503.100") -> None:
    await send(js, s.IN_DSP_DELIVERY, delivery_line(delivery["deliveryId"], delivery["responseId"], passed=passed,
                                                    acked=acked, dcc=delivery["dccAlertCode"],
                                                    user=delivery["serviceUserId"]))


async def test_csp_north_alert_with_hub_timestamp(js):
    await send(js, s.IN_CSP_NORTH, north("IT-N1", hub="20230601101500.100", timestamp="20230601101502.450"), DSP)
    [delivery] = await deliveries_for(js, "IT-N1", 1)
    assert delivery == {"v": 1, "deliveryId": "IT-N1", "responseId": "IT-N1", "dccAlertCode": None,
                        "serviceUserId": SUPPLIER}
    await acknowledge(js, delivery)
    [record] = await records_for(js, "IT-N1", 1)
    assert record["status"] == "complete" and record["revision"] == 1
    assert record["region"] == "north" and record["category"] == "device_alert"
    assert record["alert_code"] == "8F3F" and record["comms_hub_id"] == 4_000_000_001
    assert record["chf_received"] == "2023-06-01T10:15:00.100Z"
    assert record["csp_received"] == record["csp_sent"] == "2023-06-01T10:15:02.450Z"  # mapped, offset 0
    assert record["dsp_received"] == "2023-06-01T10:15:02.500Z"
    assert record["su_passed"] == "2023-06-01T10:15:02.700Z"
    assert record["su_acknowledged"] == "2023-06-01T10:15:03.100Z"
    assert record["device_alert_time"] == "2023-06-01T10:14:58.000Z"
    # legs by hand: 2.450-0.100 s; 2.500-2.450; 2.700-2.500; 3.100-2.700; 3.100-0.100
    assert (record["hub_to_csp_ms"], record["csp_to_dsp_ms"], record["dsp_to_su_ms"],
            record["su_handshake_ms"], record["end_to_end_ms"]) == (2350, 50, 200, 400, 3000)
    assert "csp_received_mapped" in record["flags"]
    assert "missing_hub_timestamp" not in record["flags"]


async def test_csp_north_alert_without_hub_timestamp(js):
    await send(js, s.IN_CSP_NORTH, north("IT-N2", hub=None), DSP)
    [delivery] = await deliveries_for(js, "IT-N2", 1)
    await acknowledge(js, delivery)
    [record] = await records_for(js, "IT-N2", 1)
    assert record["chf_received"] is None
    assert record["hub_to_csp_ms"] is None and record["end_to_end_ms"] is None
    assert record["dsp_to_su_ms"] == 200
    assert "missing_hub_timestamp" in record["flags"]


async def test_csp_central_feed(js):
    await send(js, s.IN_CSP_CENTRAL, feed("IT-C1"), DSP)
    [delivery] = await deliveries_for(js, "IT-C1", 1)
    await acknowledge(js, delivery)
    [record] = await records_for(js, "IT-C1", 1)
    assert record["region"] == "central"
    assert record["hub_to_csp_ms"] == 1800 and record["csp_to_dsp_ms"] == 500
    assert "csp_received_mapped" not in record["flags"]


async def test_service_response_is_counted_not_delivered(js):
    await send(js, s.IN_CSP_NORTH, north("IT-SR1", payload=response_payload()), DSP)
    msgs = await collect(js, s.STREAM_EVENTS, [s.RESPONSE_SEEN],
                         lambda got: any(e["response_id"] == "IT-SR1" for m in decoded(got) for e in m["events"]))
    assert any(e["response_id"] == "IT-SR1" for m in decoded(msgs) for e in m["events"])
    delivered = await collect(js, s.STREAM_EVENTS, [s.DELIVER], lambda got: False, timeout=1.0)
    assert not [d for d in decoded(delivered) if d["responseId"] == "IT-SR1"]
    rejected = await collect(js, s.STREAM_EVENTS, [f"{s.REJECTED}.*"], lambda got: False, timeout=0.5)
    assert not [r for r in decoded(rejected) if b"IT-SR1" in msgspec.json.encode(r)]


async def test_acb_alert_fans_out_to_two_dcc_alerts(js):
    await send(js, s.IN_CSP_NORTH, north("IT-ACB1", payload=alert_payload("8F3F", recipient=ACB_EUI)), DSP)
    deliveries = await deliveries_for(js, "IT-ACB1", 2)
    assert sorted(d["deliveryId"] for d in deliveries) == ["IT-ACB1:N39:1", "IT-ACB1:N54:2"]
    for d in deliveries:
        await acknowledge(js, d)
    records = await records_for(js, "IT-ACB1", 2)
    assert sorted((r["delivery_id"], r["dcc_alert_code"], r["category"]) for r in records) == [
        ("IT-ACB1:N39:1", "N39", "dcc_alert"), ("IT-ACB1:N54:2", "N54", "dcc_alert")]
    assert {r["recipient"] for r in records} == {ACB_EUI}


async def test_failed_then_acknowledged_delivery(js):
    await send(js, s.IN_CSP_NORTH, north("IT-RETRY"), DSP)
    [delivery] = await deliveries_for(js, "IT-RETRY", 1)
    await send(js, s.IN_DSP_DELIVERY, delivery_line("IT-RETRY", "IT-RETRY", passed="20230601101502.700", acked=None))
    await drained(js)  # the failed attempt is taken in before the acknowledgment is sent
    await acknowledge(js, delivery, passed="20230601101532.700", acked="20230601101533.000")
    [record] = await records_for(js, "IT-RETRY", 1)
    assert record["status"] == "complete" and record["delivery_attempts"] == 2
    assert record["su_passed"] == "2023-06-01T10:15:02.700Z"  # first time it was passed to the user
    assert record["su_acknowledged"] == "2023-06-01T10:15:33.000Z"
    assert record["su_handshake_ms"] == 30_300


@pytest.mark.parametrize("name, data, reason", [
    ("json", b'{"responseId": "IT-BAD1", oops', "bad_json"),
    ("timestamp", north("IT-BAD2", timestamp="2023-06-01T10:15:02"), "bad_timestamp"),
    ("base64", north("IT-BAD3", payload="not*base64!"), "bad_base64"),
    ("oversize", north("IT-BAD4", padding="x" * 300_000), "oversize"),
])
async def test_malformed_input_is_rejected_whole(js, name, data, reason):
    await send(js, s.IN_CSP_NORTH, data, DSP)
    msgs = await collect(js, s.STREAM_EVENTS, [s.rejected("hub-capture")],
                         lambda got: any(m.data and msgspec.json.decode(m.data)["raw"] for m in got
                                         if _raw(m) == data))
    [rejected] = [msgspec.json.decode(m.data) for m in msgs if _raw(m) == data]
    assert rejected["reason"] == reason and rejected["stage"] == "hub-capture"
    assert rejected["subject"] == s.IN_CSP_NORTH
    assert rejected["headers"] == DSP
    assert rejected["message"]


def _raw(msg) -> bytes:
    import base64

    return base64.b64decode(msgspec.json.decode(msg.data)["raw"])


async def test_same_input_twice_gives_one_record(js):
    data = north("IT-DUP1")
    await send(js, s.IN_CSP_NORTH, data, DSP)
    await send(js, s.IN_CSP_NORTH, data, DSP)
    deliveries = await deliveries_for(js, "IT-DUP1", 1)
    await acknowledge(js, deliveries[0])
    await acknowledge(js, deliveries[0])  # the log line redelivered too
    await records_for(js, "IT-DUP1", 1)
    await drained(js)  # every copy taken in: whatever they give is out
    records = await records_for(js, "IT-DUP1", 1)
    assert len(records) == 1
    deliveries = await deliveries_for(js, "IT-DUP1", 1)
    assert len(deliveries) == 1

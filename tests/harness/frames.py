"""Inputs for tests, built from parts (GBCS frames come from our own encoder)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import msgspec

from services.runtime.service import Inbound
from shared import subjects as s
from shared.gbcs import ACB_EUI, build_alert, build_response

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
DEVICE = "00-DB-12-34-56-78-9A-BC"
HUB = "00-DB-12-34-56-78-00-01"


def alert_payload(code: str = "8F3F", recipient: str = SUPPLIER, originator: str = DEVICE,
                  when: datetime = datetime(2023, 6, 1, 10, 14, 58, tzinfo=UTC), fmt: str = "dlms") -> str:
    frame = build_alert(alert_code=code, originator=originator, recipient=recipient, alert_time=when,
                        counter=7, fmt=fmt)  # type: ignore[arg-type]
    return base64.b64encode(frame).decode()


def response_payload() -> str:
    return base64.b64encode(build_response(originator=DEVICE, recipient=SUPPLIER, counter=9)).decode()


def north(response_id: str = "R1", *, payload: str | None = None, hub: str | None = "20230601101500.100",
          timestamp: str = "20230601101502.450", **extra: object) -> bytes:
    body: dict[str, object] = {"responseId": response_id, "commsHubId": 4_000_000_001,
                               "payload": payload or alert_payload(), "timestamp": timestamp}
    if hub is not None:
        body["HubTimestamp"] = hub
    body.update(extra)
    return msgspec.json.encode(body)


def feed(message_id: str = "C1", *, payload: str | None = None, chf: str | None = "20230601101500.000",
         received: str = "20230601101501.800", sent: str = "20230601101502.000") -> bytes:
    return msgspec.json.encode({
        "messageId": message_id, "commsHubId": 12, "payload": payload or alert_payload(),
        "chfReceivedTimestamp": chf, "cspReceivedTimestamp": received, "cspSentTimestamp": sent,
    })


def delivery_line(delivery_id: str, response_id: str, *, passed: str, acked: str | None,
                  dcc: str | None = None, user: str = SUPPLIER) -> bytes:
    return msgspec.json.encode({
        "deliveryId": delivery_id, "responseId": response_id, "dccAlertCode": dcc, "serviceUserId": user,
        "suPassedTimestamp": passed, "suAcknowledgedTimestamp": acked,
        "outcome": "acknowledged" if acked else "failed",
    })


def inbound(subject: str, data: bytes, *, dsp: str | None = "20230601101502.500", seq: int = 1,
            stream_time_ms: int = 1_700_000_000_000) -> Inbound:
    headers = {"Dsp-Received-Timestamp": dsp} if dsp else {}
    return Inbound(subject, data, headers, seq, stream_time_ms)


__all__ = ["ACB_EUI", "s"]

"""Every reason an input on ``ast.in.*`` is rejected for, with an input that causes it and
the reason and message the stage gives (golden: as the stages say them today; a change here
is a change of the rejections' contract)."""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from shared import subjects as s


class Case(NamedTuple):
    stage: str
    subject: str
    data: bytes
    headers: dict[str, str]
    reason: str
    message: str


def j(obj: object) -> bytes:
    return msgspec.json.encode(obj)


OK_N = {"responseId": "G1", "commsHubId": 7, "payload": "AAEC", "timestamp": "20230601101502.450",
        "HubTimestamp": "20230601101500.100"}
OK_F = {"messageId": "G2", "commsHubId": 7, "payload": "AAEC", "chfReceivedTimestamp": "20230601101500.000",
        "cspReceivedTimestamp": "20230601101501.800", "cspSentTimestamp": "20230601101502.000"}
OK_O = {"notificationType": "powerOutage", "notificationId": "O1", "commsHubId": 7, "outageDurationSeconds": 600,
        "chfReceivedTimestamp": None, "cspReceivedTimestamp": "20230601101501.800",
        "cspSentTimestamp": "20230601101502.000"}
OK_L = {"deliveryId": "D1", "responseId": "R1", "dccAlertCode": None, "serviceUserId": "SU",
        "suPassedTimestamp": "20230601101502.700", "suAcknowledgedTimestamp": "20230601101503.000",
        "outcome": "acknowledged"}


def w(base: dict[str, object], **kw: object) -> bytes:
    """``base`` with fields changed (``...``: removed)."""
    d = dict(base)
    for k, v in kw.items():
        if v is ...:
            d.pop(k, None)
        else:
            d[k] = v
    return j(d)


DSP = {"Dsp-Received-Timestamp": "20230601101502.500"}
N, C, SO, L, K = s.IN_CSP_NORTH, s.IN_CSP_CENTRAL, s.IN_CSP_SOUTH, s.IN_DSP_DELIVERY, s.IN_DSP_CLOCK
deep = {"a": 1}
for _ in range(9):
    deep = {"x": deep}

#: ``ast.in.*`` inputs each stage rejects: (stage, subject, input, headers, reason, message).
CASES: list[Case] = [
    # hub-capture
    Case("hub-capture", "ast.in.csp-east", j(OK_N), DSP,
         'unknown_subject', 'no CSP feed is published on ast.in.csp-east'),
    Case("hub-capture", N, w(OK_N, padding="x" * 300_000), DSP,
         'oversize', 'message of 300133 bytes exceeds the 262144-byte limit'),
    Case("hub-capture", N, b"", DSP,
         'bad_json', 'empty message'),
    Case("hub-capture", N, b"  \n", DSP,
         'bad_json', 'empty message'),
    Case("hub-capture", N, b'{"responseId": "X", oops', DSP,
         'bad_json', 'not JSON: JSON is malformed: object keys must be strings (byte 20)'),
    Case("hub-capture", N, b"[1, 2]", DSP,
         'bad_json', 'expected a JSON object, got list'),
    Case("hub-capture", N, b'"text"', DSP,
         'bad_json', 'expected a JSON object, got str'),
    Case("hub-capture", N, w(OK_N, extra=deep), DSP,
         'too_deep', 'JSON nested deeper than 8 levels'),
    Case("hub-capture", N, j(OK_N), {"Dsp-Received-Timestamp": "2023-06-01T10:15:02"},
         'bad_timestamp', "header Dsp-Received-Timestamp: '2023-06-01T10:15:02' is not YYYYMMDDHHMMSS.SSS"),
    Case("hub-capture", N, w(OK_N, responseId=...), DSP,
         'missing_field', '`responseId` must be a non-empty string'),
    Case("hub-capture", N, w(OK_N, responseId=""), DSP,
         'bad_field', '`responseId` must be a non-empty string'),
    Case("hub-capture", N, w(OK_N, responseId=12), DSP,
         'bad_field', '`responseId` must be a non-empty string'),
    Case("hub-capture", N, w(OK_N, responseId="R" * 129), DSP,
         'bad_field', '`responseId` is longer than 128 characters'),
    Case("hub-capture", N, w(OK_N, payload=...), DSP,
         'missing_field', '`payload` must be a non-empty Base64 string'),
    Case("hub-capture", N, w(OK_N, payload=""), DSP,
         'bad_field', '`payload` must be a non-empty Base64 string'),
    Case("hub-capture", N, w(OK_N, payload=5), DSP,
         'bad_field', '`payload` must be a non-empty Base64 string'),
    Case("hub-capture", N, w(OK_N, payload="A" * 65_540), DSP,
         'oversize_payload', '`payload` of 65540 characters exceeds the 65536-character limit'),
    Case("hub-capture", N, w(OK_N, payload="not*base64!"), DSP,
         'bad_base64', '`payload` is not Base64: Only base64 data is allowed'),
    Case("hub-capture", N, w(OK_N, payload="AAE"), DSP,
         'bad_base64', '`payload` is not Base64: Incorrect padding'),
    Case("hub-capture", N, w(OK_N, commsHubId=...), DSP,
         'missing_field', '`commsHubId` is missing'),
    Case("hub-capture", N, w(OK_N, commsHubId=None), DSP,
         'missing_field', '`commsHubId` is missing'),
    Case("hub-capture", N, w(OK_N, commsHubId=-1), DSP,
         'bad_comms_hub_id', '`commsHubId` must be an unsigned 32-bit integer, got -1'),
    Case("hub-capture", N, w(OK_N, commsHubId=2**32), DSP,
         'bad_comms_hub_id', '`commsHubId` must be an unsigned 32-bit integer, got 4294967296'),
    Case("hub-capture", N, w(OK_N, commsHubId=True), DSP,
         'bad_comms_hub_id', '`commsHubId` must be an unsigned 32-bit integer, got True'),
    Case("hub-capture", N, w(OK_N, commsHubId="7"), DSP,
         'bad_comms_hub_id', "`commsHubId` must be an unsigned 32-bit integer, got '7'"),
    Case("hub-capture", N, w(OK_N, commsHubId=7.0), DSP,
         'bad_comms_hub_id', '`commsHubId` must be an unsigned 32-bit integer, got 7.0'),
    Case("hub-capture", N, w(OK_N, timestamp=...), DSP,
         'missing_field', '`timestamp` is missing'),
    Case("hub-capture", N, w(OK_N, timestamp=20230601101502), DSP,
         'bad_timestamp', '`timestamp`: expected a YYYYMMDDHHMMSS.SSS string, got int'),
    Case("hub-capture", N, w(OK_N, timestamp="2023-06-01T10:15:02"), DSP,
         'bad_timestamp', "`timestamp`: '2023-06-01T10:15:02' is not YYYYMMDDHHMMSS.SSS"),
    Case("hub-capture", N, w(OK_N, timestamp="20230601101502,450"), DSP,
         'bad_timestamp', "`timestamp`: '20230601101502,450' is not YYYYMMDDHHMMSS.SSS"),
    Case("hub-capture", N, w(OK_N, timestamp="2023060110150.4500"), DSP,
         'bad_timestamp', "`timestamp`: '2023060110150.4500' is not YYYYMMDDHHMMSS.SSS"),
    Case("hub-capture", N, w(OK_N, timestamp="２0230601101502.450"), DSP,
         'bad_timestamp', "`timestamp`: '２0230601101502.450' is not YYYYMMDDHHMMSS.SSS"),
    Case("hub-capture", N, w(OK_N, timestamp="00000601101502.450"), DSP,
         'bad_timestamp', "`timestamp`: '00000601101502.450' is not a valid date-time: year 0 is out of range"),
    Case("hub-capture", N, w(OK_N, timestamp="20231301101502.450"), DSP,
         'bad_timestamp', "`timestamp`: '20231301101502.450' is not a valid date-time: month must be in 1..12"),
    Case("hub-capture", N, w(OK_N, timestamp="20230001101502.450"), DSP,
         'bad_timestamp', "`timestamp`: '20230001101502.450' is not a valid date-time: month must be in 1..12"),
    Case("hub-capture", N, w(OK_N, timestamp="20230229101502.450"), DSP,
         'bad_timestamp', "`timestamp`: '20230229101502.450' is not a valid date-time: "
         "day is out of range for month"),
    Case("hub-capture", N, w(OK_N, timestamp="20230431101502.450"), DSP,
         'bad_timestamp', "`timestamp`: '20230431101502.450' is not a valid date-time: "
         "day is out of range for month"),
    Case("hub-capture", N, w(OK_N, timestamp="20230600101502.450"), DSP,
         'bad_timestamp', "`timestamp`: '20230600101502.450' is not a valid date-time: "
         "day is out of range for month"),
    Case("hub-capture", N, w(OK_N, timestamp="20230601241502.450"), DSP,
         'bad_timestamp', "`timestamp`: '20230601241502.450' is not a valid date-time: hour must be in 0..23"),
    Case("hub-capture", N, w(OK_N, timestamp="20230601106002.450"), DSP,
         'bad_timestamp', "`timestamp`: '20230601106002.450' is not a valid date-time: minute must be in 0..59"),
    Case("hub-capture", N, w(OK_N, timestamp="20230601101560.450"), DSP,
         'bad_timestamp', "`timestamp`: '20230601101560.450' is not a valid date-time: second must be in 0..59"),
    Case("hub-capture", N, w(OK_N, timestamp="+0230601101502.450"), DSP,
         'bad_timestamp', "`timestamp`: '+0230601101502.450' is not YYYYMMDDHHMMSS.SSS"),
    Case("hub-capture", N, w(OK_N, HubTimestamp="20230601101500"), DSP,
         'bad_timestamp', "`HubTimestamp`: '20230601101500' is not YYYYMMDDHHMMSS.SSS"),
    Case("hub-capture", C, w(OK_F, messageId=...), DSP,
         'missing_field', '`messageId` must be a non-empty string'),
    Case("hub-capture", C, w(OK_F, cspReceivedTimestamp=...), DSP,
         'missing_field', '`cspReceivedTimestamp` is missing'),
    Case("hub-capture", C, w(OK_F, cspReceivedTimestamp=None), DSP,
         'missing_field', '`cspReceivedTimestamp` is missing'),
    Case("hub-capture", SO, w(OK_F, cspSentTimestamp=...), DSP,
         'missing_field', '`cspSentTimestamp` is missing'),
    Case("hub-capture", SO, w(OK_F, chfReceivedTimestamp="20230601101500.00"), DSP,
         'bad_timestamp', "`chfReceivedTimestamp`: '20230601101500.00' is not YYYYMMDDHHMMSS.SSS"),
    Case("hub-capture", C, w(OK_O, notificationType="powerRestored"), DSP,
         'bad_notification', "`notificationType` 'powerRestored' is not a known notification ('powerOutage')"),
    Case("hub-capture", C, w(OK_O, notificationType=None), DSP,
         'bad_notification', "`notificationType` None is not a known notification ('powerOutage')"),
    Case("hub-capture", C, w(OK_O, notificationId=...), DSP,
         'missing_field', '`notificationId` must be a non-empty string'),
    Case("hub-capture", C, w(OK_O, outageDurationSeconds=...), DSP,
         'missing_field', '`outageDurationSeconds` is missing'),
    Case("hub-capture", C, w(OK_O, outageDurationSeconds=-1), DSP,
         'bad_notification', '`outageDurationSeconds` must be whole seconds from 0 to 31622400, got -1'),
    Case("hub-capture", C, w(OK_O, outageDurationSeconds=366 * 86_400 + 1), DSP,
         'bad_notification', '`outageDurationSeconds` must be whole seconds from 0 to 31622400, got 31622401'),
    Case("hub-capture", C, w(OK_O, outageDurationSeconds=1.5), DSP,
         'bad_notification', '`outageDurationSeconds` must be whole seconds from 0 to 31622400, got 1.5'),
    Case("hub-capture", C, w(OK_O, outageDurationSeconds=False), DSP,
         'bad_notification', '`outageDurationSeconds` must be whole seconds from 0 to 31622400, got False'),
    Case("hub-capture", C, w(OK_O, commsHubId="x"), DSP,
         'bad_comms_hub_id', "`commsHubId` must be an unsigned 32-bit integer, got 'x'"),
    Case("hub-capture", C, w(OK_O, cspSentTimestamp=...), DSP,
         'missing_field', '`cspSentTimestamp` is missing'),
    Case("hub-capture", N, w(OK_O, cspReceivedTimestamp="20231232000000.000"), DSP,
         'bad_timestamp', "`cspReceivedTimestamp`: '20231232000000.000' is not a valid date-time: "
         "day is out of range for month"),
    # dsp-mapping: delivery log
    Case("dsp-mapping", L, w(OK_L, deliveryId="d" * 300_000), {},
         'oversize', 'message of 300189 bytes exceeds the 262144-byte limit'),
    Case("dsp-mapping", L, b"", {},
         'bad_json', 'empty message'),
    Case("dsp-mapping", L, b"{", {},
         'bad_json', 'not JSON: Input data was truncated'),
    Case("dsp-mapping", L, b"null", {},
         'bad_json', 'expected a JSON object, got NoneType'),
    Case("dsp-mapping", L, w(OK_L, extra=deep), {},
         'too_deep', 'JSON nested deeper than 8 levels'),
    Case("dsp-mapping", L, w(OK_L, deliveryId=...), {},
         'missing_field', '`deliveryId` must be a non-empty string'),
    Case("dsp-mapping", L, w(OK_L, deliveryId="d" * 161), {},
         'bad_field', '`deliveryId` is longer than 160 characters'),
    Case("dsp-mapping", L, w(OK_L, deliveryId=[]), {},
         'bad_field', '`deliveryId` must be a non-empty string'),
    Case("dsp-mapping", L, w(OK_L, dccAlertCode="N99"), {},
         'bad_field', "`dccAlertCode` 'N99' is not one of ['AD1', 'N39', 'N53', 'N54', 'N62']"),
    Case("dsp-mapping", L, w(OK_L, dccAlertCode=""), {},
         'bad_field', '`dccAlertCode` must be a non-empty string'),
    Case("dsp-mapping", L, w(OK_L, outcome=...), {},
         'bad_outcome', "`outcome` None is not one of ['acknowledged', 'failed', 'throttled']"),
    Case("dsp-mapping", L, w(OK_L, outcome="delivered"), {},
         'bad_outcome', "`outcome` 'delivered' is not one of ['acknowledged', 'failed', 'throttled']"),
    Case("dsp-mapping", L, w(OK_L, outcome=["acknowledged"]), {},
         'bad_outcome', "`outcome` ['acknowledged'] is not one of ['acknowledged', 'failed', 'throttled']"),
    Case("dsp-mapping", L, w(OK_L, throttledAlertCount=-1), {},
         'bad_throttled_count', '`throttledAlertCount` must be a whole number from 0 to 4294967295, got -1'),
    Case("dsp-mapping", L, w(OK_L, throttledAlertCount=2**32), {},
         'bad_throttled_count', '`throttledAlertCount` must be a whole number from 0 to 4294967295, got 4294967296'),
    Case("dsp-mapping", L, w(OK_L, throttledAlertCount="3"), {},
         'bad_throttled_count', "`throttledAlertCount` must be a whole number from 0 to 4294967295, got '3'"),
    Case("dsp-mapping", L, w(OK_L, throttledAlertCount=True), {},
         'bad_throttled_count', '`throttledAlertCount` must be a whole number from 0 to 4294967295, got True'),
    Case("dsp-mapping", L, w(OK_L, outcome="throttled", suAcknowledgedTimestamp=None), {},
         'bad_field', '`suPassedTimestamp` must be null when outcome is throttled'),
    Case("dsp-mapping", L, w(OK_L, outcome="throttled", suPassedTimestamp=None), {},
         'bad_field', '`suAcknowledgedTimestamp` must be null when outcome is throttled'),
    Case("dsp-mapping", L, w(OK_L, outcome="throttled", suPassedTimestamp=None, suAcknowledgedTimestamp=None,
                               throttledAlertCount=3), {},
         'bad_field', '`throttledAlertCount` must be null when outcome is throttled'),
    Case("dsp-mapping", L, w(OK_L, suPassedTimestamp=...), {},
         'missing_field', '`suPassedTimestamp` is missing'),
    Case("dsp-mapping", L, w(OK_L, suPassedTimestamp="20230601101502"), {},
         'bad_timestamp', "`suPassedTimestamp`: '20230601101502' is not YYYYMMDDHHMMSS.SSS"),
    Case("dsp-mapping", L, w(OK_L, suAcknowledgedTimestamp="20230631101503.000"), {},
         'bad_timestamp', "`suAcknowledgedTimestamp`: '20230631101503.000' is not a valid date-time: "
         "day is out of range for month"),
    Case("dsp-mapping", L, w(OK_L, suAcknowledgedTimestamp=None), {},
         'missing_field', '`suAcknowledgedTimestamp` is required when outcome is acknowledged'),
    Case("dsp-mapping", L, w(OK_L, responseId=...), {},
         'missing_field', '`responseId` must be a non-empty string'),
    Case("dsp-mapping", L, w(OK_L, serviceUserId=""), {},
         'bad_field', '`serviceUserId` must be a non-empty string'),
    Case("dsp-mapping", L, w(OK_L, serviceUserId="S" * 129), {},
         'bad_field', '`serviceUserId` is longer than 128 characters'),
    # dsp-mapping: clock
    Case("dsp-mapping", K, j({"time": "20230601101502.700", "pad": "x" * 5000}), {},
         'oversize', 'message of 5038 bytes exceeds the 4096-byte limit'),
    Case("dsp-mapping", K, b"tick", {},
         'bad_json', 'not JSON: JSON is malformed: invalid character (byte 4)'),
    Case("dsp-mapping", K, j({"time": "20230601101502.700", "a": {"b": {"c": 1}}}), {},
         'too_deep', 'JSON nested deeper than 2 levels'),
    Case("dsp-mapping", K, j({}), {},
         'missing_field', '`time` is missing'),
    Case("dsp-mapping", K, j({"time": "20230601101502"}), {},
         'bad_timestamp', "`time`: '20230601101502' is not YYYYMMDDHHMMSS.SSS"),
]

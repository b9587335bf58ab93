"""Pure core of dsp-mapping.

- ``deliveries``: an alert -> the deliveries the DSP makes. An alert to a Service User is
  delivered as is (``delivery_id == response_id``); an alert to the Access Control Broker
  raises the DCC alerts the rule table names, each its own delivery
  (``<responseId>:<code>:<n>``) that keeps the parent's ``response_id``.
- ``outage_deliveries``: a CSP's power-outage notification -> DCC Alert AD1 to the network
  operator (``<notificationId>:AD1:1``) when the outage lasted long enough, else nothing.
- ``delivery_attempt``: one line of the DSP delivery log, validated (outcome
  ``throttled``: discarded under Alert Storm Protection, never passed to the Service User).
- ``clock_tick``: the DSP gateway's clock heartbeat.
"""

from __future__ import annotations

from typing import Annotated, get_args

import msgspec

from services.runtime.service import Inbound
from services.runtime.validation import (
    InvalidInput,
    Text,
    json_object,
    optional_text,
    reject,
    text_field,
    timestamp,
    typed_timestamp,
)
from shared import subjects as s
from shared.csp_notifications import PowerOutageShape
from shared.dcc_rules import RuleTable
from shared.events import (
    FLAG_NO_DCC_RULE,
    AlertEnriched,
    Category,
    ClockTick,
    DeliverNotice,
    DeliveryAttempted,
    DeliveryExpected,
    OutageNotified,
    Outcome,
    RejectedInput,
)
from shared.gbcs import ACB_EUI
from shared.settings import Settings
from shared.timefmt import TimestampError, parse_csp

STAGE = s.DSP_MAPPING
DCC_ALERT_CODES = frozenset({"N39", "N53", "N54", "N62", "AD1"})
OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
#: The largest ``throttledAlertCount`` taken as true (an unsigned 32-bit count).
MAX_THROTTLED_COUNT = 2**32 - 1
#: The longest ``deliveryId`` (a response id with a DCC Alert code and a number).
MAX_DELIVERY_ID = 160
#: The clock heartbeat's bounds: it is one small object.
CLOCK_MAX_BYTES, CLOCK_MAX_DEPTH = 4096, 2


class DeliveryLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One line of the DSP delivery log on ``ast.in.dsp-delivery``, typed (``delivery_attempt``)."""

    delivery_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_DELIVERY_ID)] = msgspec.field(
        name="deliveryId")
    response_id: Text = msgspec.field(name="responseId")
    service_user_id: Text = msgspec.field(name="serviceUserId")
    outcome: Outcome
    dcc_alert_code: Text | None = msgspec.field(default=None, name="dccAlertCode")
    su_passed: str | None = msgspec.field(default=None, name="suPassedTimestamp")
    su_acknowledged: str | None = msgspec.field(default=None, name="suAcknowledgedTimestamp")
    throttled_count: Annotated[int, msgspec.Meta(ge=0, le=MAX_THROTTLED_COUNT)] | None = msgspec.field(
        default=None, name="throttledAlertCount")


class ClockInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The DSP gateway's clock heartbeat on ``ast.in.dsp-clock``."""

    time: str


_line = msgspec.json.Decoder(DeliveryLine)
_clock = msgspec.json.Decoder(ClockInput)


def deliveries(alert: AlertEnriched, rules: RuleTable) -> tuple[list[DeliveryExpected], list[str]]:
    """The deliveries one alert makes, and flags to note when it makes none."""
    if alert.recipient != ACB_EUI:
        return [_expected(alert, alert.response_id, "device_alert", None, alert.recipient)], []
    raised = rules.rules_for(alert.alert_code)
    if not raised:
        return [], [FLAG_NO_DCC_RULE]
    return [
        _expected(alert, f"{alert.response_id}:{rule.dcc_alert_code}:{n}", "dcc_alert",
                  rule.dcc_alert_code, rule.service_user_id)
        for n, rule in enumerate(raised, start=1)
    ], []


def _expected(alert: AlertEnriched, delivery_id: str, category: Category, dcc_code: str | None,
              service_user_id: str) -> DeliveryExpected:
    return DeliveryExpected(
        event_id=f"exp:{delivery_id}",
        delivery_id=delivery_id,
        response_id=alert.response_id,
        region=alert.region,
        comms_hub_id=alert.comms_hub_id,
        category=category,
        alert_code=alert.alert_code,
        dcc_alert_code=dcc_code,
        message_code=alert.message_code,
        originator=alert.originator,
        recipient=alert.recipient,
        service_user_id=service_user_id,
        device_alert_time=alert.device_alert_time,
        chf_received=alert.chf_received,
        csp_received=alert.csp_received,
        csp_sent=alert.csp_sent,
        dsp_received=alert.dsp_received,
        flags=alert.flags,
        trace=alert.trace,
    )


def outage_deliveries(note: OutageNotified, shape: PowerOutageShape) -> list[DeliveryExpected]:
    """The DCC Alert a power-outage notification raises: one, when the outage lasted at least
    ``shape.min_duration_s``; none for a shorter one."""
    if note.outage_duration_s < shape.min_duration_s:
        return []
    delivery_id = f"{note.response_id}:{shape.dcc_alert_code}:1"
    return [DeliveryExpected(
        event_id=f"exp:{delivery_id}",
        delivery_id=delivery_id,
        response_id=note.response_id,
        region=note.region,
        comms_hub_id=note.comms_hub_id,
        category="dcc_alert",
        alert_code=None,
        dcc_alert_code=shape.dcc_alert_code,
        message_code=None,
        originator=None,
        recipient=shape.service_user,
        service_user_id=shape.service_user,
        device_alert_time=None,
        chf_received=note.chf_received,
        csp_received=note.csp_received,
        csp_sent=note.csp_sent,
        dsp_received=note.dsp_received,
        trace=note.trace,
    )]


def notice(expected: DeliveryExpected) -> DeliverNotice:
    return DeliverNotice(
        delivery_id=expected.delivery_id,
        response_id=expected.response_id,
        dcc_alert_code=expected.dcc_alert_code,
        service_user_id=expected.service_user_id,
    )


def delivery_attempt(msg: Inbound, settings: Settings,
                     dcc_alert_codes: frozenset[str] = DCC_ALERT_CODES) -> DeliveryAttempted | RejectedInput:
    if len(msg.data) <= settings.max_message_bytes:
        typed = _typed_attempt(msg, dcc_alert_codes)
        if typed is not None:
            return typed
    return checked_attempt(msg, settings, dcc_alert_codes)


def _typed_attempt(msg: Inbound, dcc_alert_codes: frozenset[str]) -> DeliveryAttempted | None:
    """A log line decoded in one pass into ``DeliveryLine``; None when the decode or a check
    refuses it: ``checked_attempt`` reads it then and says why."""
    try:
        line = _line.decode(msg.data)
        if line.dcc_alert_code is not None and line.dcc_alert_code not in dcc_alert_codes:
            return None
        if line.outcome == "throttled":
            if line.su_passed is not None or line.su_acknowledged is not None or line.throttled_count is not None:
                return None
            passed = acknowledged = None
        else:
            if line.su_passed is None:
                return None
            passed = parse_csp(line.su_passed)
            acknowledged = typed_timestamp(line.su_acknowledged)
            if acknowledged is None and line.outcome == "acknowledged":
                return None
        return _attempt(msg, line.delivery_id, line.response_id, line.dcc_alert_code, line.service_user_id,
                        passed, acknowledged, line.outcome, line.throttled_count)
    except (msgspec.DecodeError, TimestampError):
        return None


def checked_attempt(msg: Inbound, settings: Settings,
                    dcc_alert_codes: frozenset[str] = DCC_ALERT_CODES) -> DeliveryAttempted | RejectedInput:
    """The log line read field by field: the attempt, or the reason it is rejected for."""
    try:
        obj = json_object(msg.data, max_bytes=settings.max_message_bytes, max_depth=settings.max_json_depth)
        delivery_id = text_field(obj, "deliveryId", max_len=MAX_DELIVERY_ID)
        dcc_code = optional_text(obj, "dccAlertCode")
        if dcc_code is not None and dcc_code not in dcc_alert_codes:
            raise InvalidInput("bad_field", f"`dccAlertCode` {dcc_code!r:.20} is not one of {sorted(dcc_alert_codes)}")
        outcome = obj.get("outcome")
        if not isinstance(outcome, str) or outcome not in OUTCOMES:  # a list or object is not hashable
            raise InvalidInput("bad_outcome", f"`outcome` {outcome!r:.30} is not one of {sorted(OUTCOMES)}")
        count = throttled_count(obj)
        if outcome == "throttled":
            # Discarded by storm protection: never passed, so no SU times; and not forwarded,
            # so no count of alerts held back either.
            for name in ("suPassedTimestamp", "suAcknowledgedTimestamp", "throttledAlertCount"):
                if obj.get(name) is not None:
                    raise InvalidInput("bad_field", f"`{name}` must be null when outcome is throttled")
            passed = acknowledged = None
        else:
            passed = timestamp(obj, "suPassedTimestamp", required=True)
            acknowledged = timestamp(obj, "suAcknowledgedTimestamp", required=False)
        if outcome == "acknowledged" and acknowledged is None:
            raise InvalidInput("missing_field", "`suAcknowledgedTimestamp` is required when outcome is acknowledged")
        response_id = text_field(obj, "responseId")
        service_user_id = text_field(obj, "serviceUserId")
        return _attempt(msg, delivery_id, response_id, dcc_code, service_user_id, passed, acknowledged,
                        outcome, count)  # type: ignore[arg-type]  # one of OUTCOMES
    except InvalidInput as exc:
        return reject(msg, exc.reason, str(exc), stage=STAGE)


def _attempt(msg: Inbound, delivery_id: str, response_id: str, dcc_code: str | None, service_user_id: str,
             passed: int | None, acknowledged: int | None, outcome: Outcome, count: int | None) -> DeliveryAttempted:
    if outcome == "failed":
        acknowledged = None
    return DeliveryAttempted(
        event_id=f"att:{delivery_id}:{passed}:{outcome}" + ("" if count is None else f":{count}"),
        delivery_id=delivery_id,
        response_id=response_id,
        dcc_alert_code=dcc_code,
        service_user_id=service_user_id,
        su_passed=passed,
        su_acknowledged=acknowledged,
        outcome=outcome,
        throttled_count=count,
        source_seq=msg.stream_seq,
    )


def throttled_count(obj: dict[str, object]) -> int | None:
    """``throttledAlertCount``: absent or null, or a whole number from 0 to 2^32 - 1."""
    value = obj.get("throttledAlertCount")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_THROTTLED_COUNT:
        raise InvalidInput("bad_throttled_count", "`throttledAlertCount` must be a whole number from 0 to "
                           f"{MAX_THROTTLED_COUNT}, got {value!r:.30}")
    return value


def clock_tick(msg: Inbound, settings: Settings) -> ClockTick | RejectedInput:
    if len(msg.data) <= CLOCK_MAX_BYTES:
        try:
            time = parse_csp(_clock.decode(msg.data).time)
            return ClockTick(event_id=f"clock:{time}", time=time)
        except (msgspec.DecodeError, TimestampError):
            pass  # read field by field below, to say why
    try:
        obj = json_object(msg.data, max_bytes=CLOCK_MAX_BYTES, max_depth=CLOCK_MAX_DEPTH)
        time = timestamp(obj, "time", required=True)
        return ClockTick(event_id=f"clock:{time}", time=time)
    except InvalidInput as exc:
        return reject(msg, exc.reason, str(exc), stage=STAGE)

"""Pure core of hub-capture: one inbound CSP message -> AlertCaptured, OutageNotified (a CSP's
power-outage notification, on any feed) or RejectedInput."""

from __future__ import annotations

from typing import Any

import msgspec

from services.runtime.service import Inbound
from services.runtime.validation import (
    TRACE_HEADER,
    HubId,
    InvalidInput,
    NonEmpty,
    Text,
    base64_payload,
    comms_hub_id,
    dsp_received_of,
    json_object,
    reject,
    text_field,
    timestamp,
    typed_payload,
    typed_timestamp,
)
from shared import subjects as s
from shared.csp_notifications import PowerOutageShape
from shared.events import AlertCaptured, DspReceivedSource, OutageNotified, Region, RejectedInput
from shared.settings import Settings
from shared.timefmt import TimestampError, parse_csp

STAGE = s.HUB_CAPTURE


class NorthAlert(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An alert on ``ast.in.csp-north`` as CSP North sends it (extra fields: read by fields)."""

    response_id: Text = msgspec.field(name="responseId")
    comms_hub_id: HubId = msgspec.field(name="commsHubId")
    payload: NonEmpty
    timestamp: str
    hub_timestamp: str | None = msgspec.field(default=None, name="HubTimestamp")


class FeedAlert(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An alert on ``ast.in.csp-central`` / ``ast.in.csp-south`` (the CSP feed)."""

    message_id: Text = msgspec.field(name="messageId")
    comms_hub_id: HubId = msgspec.field(name="commsHubId")
    payload: NonEmpty
    csp_received: str = msgspec.field(name="cspReceivedTimestamp")
    csp_sent: str = msgspec.field(name="cspSentTimestamp")
    chf_received: str | None = msgspec.field(default=None, name="chfReceivedTimestamp")


def _names(struct: type[msgspec.Struct]) -> frozenset[str]:
    return frozenset(f.encode_name for f in msgspec.structs.fields(struct))


NORTH_FIELDS = _names(NorthAlert)
FEED_FIELDS = _names(FeedAlert)
_north = msgspec.json.Decoder(NorthAlert)
_feed_alert = msgspec.json.Decoder(FeedAlert)


DEFAULT_OUTAGE_SHAPE = PowerOutageShape()
#: The longest outage a notification may state (a year): beyond it the figure is not believable.
MAX_OUTAGE_S = 366 * 86_400


def capture(msg: Inbound, settings: Settings,
            outage: PowerOutageShape = DEFAULT_OUTAGE_SHAPE) -> AlertCaptured | OutageNotified | RejectedInput:
    region = s.IN_CSP.get(msg.subject)
    if region is not None and len(msg.data) <= settings.max_message_bytes:
        typed = _typed(msg, region, settings, outage)
        if typed is not None:
            return typed
    return checked_capture(msg, settings, outage)


def _typed(msg: Inbound, region: Region, settings: Settings, outage: PowerOutageShape) -> AlertCaptured | None:
    """An alert decoded in one pass into its Struct; None when the decode or a check refuses
    it (or it may be a notification): ``checked_capture`` reads it then and says why."""
    try:
        if region == "north":
            if outage.type_field in NORTH_FIELDS:
                return None
            north = _north.decode(msg.data)
            payload, hub_id, response_id = north.payload, north.comms_hub_id, north.response_id
            chf, csp_received, csp_sent = typed_timestamp(north.hub_timestamp), None, north.timestamp
        else:
            if outage.type_field in FEED_FIELDS:
                return None
            feed = _feed_alert.decode(msg.data)
            payload, hub_id, response_id = feed.payload, feed.comms_hub_id, feed.message_id
            chf, csp_received, csp_sent = (typed_timestamp(feed.chf_received), typed_timestamp(feed.csp_received),
                                           feed.csp_sent)
        if not typed_payload(payload, max_chars=settings.max_payload_b64_chars):
            return None
        dsp_received, source = dsp_received_of(msg)
        return _captured(msg, region, response_id, hub_id, payload, chf, csp_received,
                         parse_csp(csp_sent), dsp_received, source, {})
    except (msgspec.DecodeError, TimestampError, InvalidInput):
        return None


def checked_capture(msg: Inbound, settings: Settings,
                    outage: PowerOutageShape = DEFAULT_OUTAGE_SHAPE) -> AlertCaptured | OutageNotified | RejectedInput:
    """The input read field by field: an alert with extra fields, a notification, or the
    reason it is rejected for."""
    region = s.IN_CSP.get(msg.subject)
    try:
        if region is None:
            raise InvalidInput("unknown_subject", f"no CSP feed is published on {msg.subject}")
        obj = json_object(msg.data, max_bytes=settings.max_message_bytes, max_depth=settings.max_json_depth)
        dsp_received, source = dsp_received_of(msg)
        if outage.is_notification(obj):
            return _outage(obj, msg, region, dsp_received, source, outage)
        if region == "north":
            return _north_fields(obj, msg, dsp_received, source, settings)
        return _feed(obj, msg, region, dsp_received, source, settings)
    except InvalidInput as exc:
        return reject(msg, exc.reason, str(exc), stage=STAGE)


def _captured(msg: Inbound, region: Region, response_id: str, hub_id: int, payload: str, chf: int | None,
              csp_received: int | None, csp_sent: int, dsp_received: int, source: DspReceivedSource,
              extra: dict[str, Any]) -> AlertCaptured:
    return AlertCaptured(
        event_id=f"cap:{region}:{response_id}",
        response_id=response_id,
        region=region,
        comms_hub_id=hub_id,
        payload=payload,
        chf_received=chf,
        csp_received=csp_received,  # None for North: CSP North sends when the alert left it (mapped downstream)
        csp_sent=csp_sent,
        dsp_received=dsp_received,
        dsp_received_source=source,
        source_seq=msg.stream_seq,
        extra=extra,
        trace=msg.headers.get(TRACE_HEADER),
    )


def _north_fields(obj: dict[str, Any], msg: Inbound, dsp_received: int, source: DspReceivedSource,
                  settings: Settings) -> AlertCaptured:
    # The order of the checks is the order of the reasons (the first failing one is given).
    response_id = text_field(obj, "responseId")
    payload, _ = base64_payload(obj, max_chars=settings.max_payload_b64_chars)
    hub_id = comms_hub_id(obj)
    chf = timestamp(obj, "HubTimestamp", required=False)
    csp_sent = timestamp(obj, "timestamp", required=True)
    return _captured(msg, "north", response_id, hub_id, payload, chf, None, csp_sent, dsp_received, source,
                     {k: v for k, v in obj.items() if k not in NORTH_FIELDS})


def _feed(obj: dict[str, Any], msg: Inbound, region: Region, dsp_received: int, source: DspReceivedSource,
          settings: Settings) -> AlertCaptured:
    response_id = text_field(obj, "messageId")
    payload, _ = base64_payload(obj, max_chars=settings.max_payload_b64_chars)
    hub_id = comms_hub_id(obj)
    chf = timestamp(obj, "chfReceivedTimestamp", required=False)
    csp_received = timestamp(obj, "cspReceivedTimestamp", required=True)
    csp_sent = timestamp(obj, "cspSentTimestamp", required=True)
    return _captured(msg, region, response_id, hub_id, payload, chf, csp_received, csp_sent, dsp_received, source,
                     {k: v for k, v in obj.items() if k not in FEED_FIELDS})


def _outage(obj: dict[str, Any], msg: Inbound, region: str, dsp_received: int, source: str,
            shape: PowerOutageShape) -> OutageNotified:
    kind = obj.get(shape.type_field)
    if kind != shape.type_value:
        raise InvalidInput("bad_notification",
                           f"`{shape.type_field}` {kind!r:.40} is not a known notification ({shape.type_value!r})")
    notification_id = text_field(obj, shape.id_field)
    duration = obj.get(shape.duration_field)
    if duration is None:
        raise InvalidInput("missing_field", f"`{shape.duration_field}` is missing")
    if isinstance(duration, bool) or not isinstance(duration, int) or not 0 <= duration <= MAX_OUTAGE_S:
        raise InvalidInput("bad_notification", f"`{shape.duration_field}` must be whole seconds from 0 to "
                           f"{MAX_OUTAGE_S}, got {duration!r:.40}")
    return OutageNotified(
        event_id=f"cap:{region}:outage:{notification_id}",
        response_id=notification_id,
        region=region,  # type: ignore[arg-type]
        comms_hub_id=comms_hub_id(obj),
        outage_duration_s=duration,
        chf_received=timestamp(obj, shape.chf_received_field, required=False),
        csp_received=timestamp(obj, shape.csp_received_field, required=True),
        csp_sent=timestamp(obj, shape.csp_sent_field, required=True),
        dsp_received=dsp_received,
        dsp_received_source=source,  # type: ignore[arg-type]
        source_seq=msg.stream_seq,
        extra={k: v for k, v in obj.items() if k not in shape.fields},
        trace=msg.headers.get(TRACE_HEADER),
    )

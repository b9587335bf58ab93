"""Pure core of hub-capture: one inbound CSP message -> AlertCaptured, OutageNotified (a CSP's
power-outage notification, on any feed) or RejectedInput."""

from __future__ import annotations

from typing import Any

from services.runtime.service import Inbound
from services.runtime.validation import (
    TRACE_HEADER,
    InvalidInput,
    base64_payload,
    comms_hub_id,
    dsp_received_of,
    json_object,
    reject,
    text_field,
    timestamp,
)
from shared import subjects as s
from shared.csp_notifications import PowerOutageShape
from shared.events import AlertCaptured, DspReceivedSource, OutageNotified, Region, RejectedInput
from shared.settings import Settings

STAGE = s.HUB_CAPTURE

NORTH_FIELDS = {"responseId", "commsHubId", "payload", "timestamp", "HubTimestamp"}
FEED_FIELDS = {
    "messageId", "commsHubId", "payload",
    "chfReceivedTimestamp", "cspReceivedTimestamp", "cspSentTimestamp",
}


DEFAULT_OUTAGE_SHAPE = PowerOutageShape()
#: The longest outage a notification may state (a year): beyond it the figure is not believable.
MAX_OUTAGE_S = 366 * 86_400


def capture(msg: Inbound, settings: Settings,
            outage: PowerOutageShape = DEFAULT_OUTAGE_SHAPE) -> AlertCaptured | OutageNotified | RejectedInput:
    region = s.IN_CSP.get(msg.subject)
    try:
        if region is None:
            raise InvalidInput("unknown_subject", f"no CSP feed is published on {msg.subject}")
        obj = json_object(msg.data, max_bytes=settings.max_message_bytes, max_depth=settings.max_json_depth)
        dsp_received, source = dsp_received_of(msg)
        if outage.is_notification(obj):
            return _outage(obj, msg, region, dsp_received, source, outage)
        if region == "north":
            return _north(obj, msg, dsp_received, source, settings)
        return _feed(obj, msg, region, dsp_received, source, settings)
    except InvalidInput as exc:
        return reject(msg, exc.reason, str(exc), stage=STAGE)




def _north(obj: dict[str, Any], msg: Inbound, dsp_received: int, source: DspReceivedSource,
           settings: Settings) -> AlertCaptured:
    response_id = text_field(obj, "responseId")
    payload, _ = base64_payload(obj, max_chars=settings.max_payload_b64_chars)
    return AlertCaptured(
        event_id=f"cap:north:{response_id}",
        response_id=response_id,
        region="north",
        comms_hub_id=comms_hub_id(obj),
        payload=payload,
        chf_received=timestamp(obj, "HubTimestamp", required=False),
        csp_received=None,  # CSP North sends when the alert left it; mapped by csp-enrichment
        csp_sent=timestamp(obj, "timestamp", required=True),
        dsp_received=dsp_received,
        dsp_received_source=source,
        source_seq=msg.stream_seq,
        extra={k: v for k, v in obj.items() if k not in NORTH_FIELDS},
        trace=msg.headers.get(TRACE_HEADER),
    )


def _feed(obj: dict[str, Any], msg: Inbound, region: Region, dsp_received: int, source: DspReceivedSource,
          settings: Settings) -> AlertCaptured:
    response_id = text_field(obj, "messageId")
    payload, _ = base64_payload(obj, max_chars=settings.max_payload_b64_chars)
    return AlertCaptured(
        event_id=f"cap:{region}:{response_id}",
        response_id=response_id,
        region=region,
        comms_hub_id=comms_hub_id(obj),
        payload=payload,
        chf_received=timestamp(obj, "chfReceivedTimestamp", required=False),
        csp_received=timestamp(obj, "cspReceivedTimestamp", required=True),
        csp_sent=timestamp(obj, "cspSentTimestamp", required=True),
        dsp_received=dsp_received,
        dsp_received_source=source,
        source_seq=msg.stream_seq,
        extra={k: v for k, v in obj.items() if k not in FEED_FIELDS},
        trace=msg.headers.get(TRACE_HEADER),
    )


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

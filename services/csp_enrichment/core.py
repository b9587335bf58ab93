"""Pure core of csp-enrichment: AlertCaptured -> AlertEnriched | ServiceResponseSeen | RejectedInput."""

from __future__ import annotations

import binascii

import msgspec

from shared import gbcs
from shared import subjects as s
from shared.events import (
    FLAG_ALERT_CODE_UNKNOWN,
    FLAG_CSP_RECEIVED_MAPPED,
    AlertCaptured,
    AlertEnriched,
    OutageNotified,
    RejectedInput,
    ServiceResponseSeen,
    encoder,
)
from shared.timefmt import to_ms

STAGE = s.CSP_ENRICHMENT


def enrich(event: AlertCaptured, csp_north_offset_ms: int = 0) -> AlertEnriched | ServiceResponseSeen | RejectedInput:
    try:
        message = gbcs.decode(binascii.a2b_base64(event.payload))
    except gbcs.GbcsError as exc:
        return _reject(event, "bad_gbcs", f"payload is not a GBCS message: {exc}")
    except (binascii.Error, ValueError) as exc:
        return _reject(event, "bad_base64", f"payload is not Base64: {exc}")

    if message.cra_flag != "alert":
        return ServiceResponseSeen(
            event_id=f"resp:{event.region}:{event.response_id}",
            response_id=event.response_id,
            region=event.region,
            cra_flag=message.cra_flag,
            message_code=message.message_code,
            dsp_received=event.dsp_received,
        )

    flags: list[str] = []
    csp_received: int | None
    if event.region == "north":
        # The agreed mapping: CSP North's `timestamp` (when the alert *left* CSP North)
        # stands for csp_received, less a configurable processing offset. Said on the record.
        csp_received = event.csp_sent - csp_north_offset_ms
        flags.append(FLAG_CSP_RECEIVED_MAPPED)
    else:
        csp_received = event.csp_received
    if message.alert_code is None:
        flags.append(FLAG_ALERT_CODE_UNKNOWN)

    return AlertEnriched(
        event_id=f"enr:{event.region}:{event.response_id}",
        response_id=event.response_id,
        region=event.region,
        comms_hub_id=event.comms_hub_id,
        message_code=message.message_code,
        alert_code=message.alert_code,
        originator=message.originator,
        recipient=message.recipient,
        device_alert_time=to_ms(message.alert_time) if message.alert_time else None,
        chf_received=event.chf_received,
        csp_received=csp_received,
        csp_sent=event.csp_sent,
        dsp_received=event.dsp_received,
        flags=tuple(flags),
        trace=event.trace,
    )


def pass_on(event: OutageNotified) -> OutageNotified:
    """A power-outage notification carries the CSP's own times and no GBCS: it goes on to
    dsp-mapping unchanged, under an id of this stage (its envelope must not look like a copy
    of the captured one to JetStream's de-duplication)."""
    return msgspec.structs.replace(event, event_id=f"enr:{event.region}:outage:{event.response_id}")


def _reject(event: AlertCaptured, reason: str, message: str) -> RejectedInput:
    return RejectedInput(
        event_id=f"rej:{STAGE}:{event.event_id}",
        stage=STAGE,
        reason=reason,
        message=message,
        subject=s.CAPTURED,
        raw=encoder.encode(event),
        source_seq=event.source_seq,
        dsp_received=event.dsp_received,
    )

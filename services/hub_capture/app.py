"""hub-capture service: ast.in.csp-* -> ast.captured (+ ast.rejected.hub-capture)."""

from __future__ import annotations

import msgspec

from services.hub_capture.core import capture
from services.runtime.service import Emitter, Inbound, Service, binding
from shared import subjects as s
from shared.csp_notifications import load as load_notifications
from shared.events import RejectedInput
from shared.settings import Settings
from shared.telemetry.logging import log_rejected
from shared.telemetry.tracing import Tracing, setup_tracing


def build(settings: Settings, tracing: Tracing | None = None) -> Service:
    tracing = tracing or setup_tracing(s.HUB_CAPTURE, settings)
    outage = load_notifications(settings.csp_notifications)

    def handle(batch: list[Inbound], out: Emitter) -> None:
        for msg in batch:
            event = capture(msg, settings, outage)
            if isinstance(event, RejectedInput):
                log_rejected(event)
                out.rejected(event)
                continue
            if tracing.enabled:  # the alert's trace starts here (or continues the source's)
                event = msgspec.structs.replace(event, trace=tracing.step(
                    "hub-capture", event.trace, msg.stream_time_ms, **{
                        "alert.response_id": event.response_id, "alert.region": event.region,
                        "messaging.destination.name": msg.subject, "messaging.stream_seq": msg.stream_seq}))
            out.locate(event.response_id, s.STREAM_IN, msg.stream_seq)
            out.event(s.CAPTURED, event)

    return Service(s.HUB_CAPTURE, settings, [binding(settings, "hub-capture", handle)],
                   tracing=tracing)

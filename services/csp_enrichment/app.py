"""csp-enrichment service: ast.captured -> ast.enriched, ast.response-seen (+ rejected)."""

from __future__ import annotations

import msgspec

from services.csp_enrichment.core import STAGE, enrich, pass_on
from services.runtime.envelopes import events_of
from services.runtime.service import Emitter, Inbound, Service, binding
from shared import subjects as s
from shared.events import AlertCaptured, AlertEnriched, OutageNotified, RejectedInput
from shared.settings import Settings
from shared.telemetry import Tracing, log_rejected, setup_tracing


def build(settings: Settings, tracing: Tracing | None = None) -> Service:
    offset = settings.csp_north_offset_ms
    tracing = tracing or setup_tracing(STAGE)

    def handle(batch: list[Inbound], out: Emitter) -> None:
        for msg, event in events_of(batch, STAGE, out):
            if isinstance(event, OutageNotified):  # no GBCS inside: on to dsp-mapping as it is
                out.event(s.ENRICHED, pass_on(event))
                continue
            if not isinstance(event, AlertCaptured):
                continue
            result = enrich(event, offset)
            if isinstance(result, AlertEnriched):
                if tracing.enabled:
                    result = msgspec.structs.replace(result, trace=tracing.step(
                        "csp-enrichment", result.trace, msg.stream_time_ms, **{
                            "alert.response_id": result.response_id, "alert.code": result.alert_code,
                            "alert.recipient": result.recipient, "messaging.destination.name": msg.subject}))
                out.event(s.ENRICHED, result)
            elif isinstance(result, RejectedInput):
                log_rejected(result, event.trace)
                out.rejected(result)
            else:
                out.event(s.RESPONSE_SEEN, result)

    return Service(STAGE, settings, [binding(settings, "csp-enrichment", handle)],
                   tracing=tracing)

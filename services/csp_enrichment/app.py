"""csp-enrichment service: ast.captured -> ast.enriched, ast.response-seen (+ rejected).

A rejected alert goes out whole: the captured event names the input's sequence in ``AST_IN``
(``source_seq``), and the rejection carries that input's subject, headers and bytes, read back
by sequence (rejections are rare, so the read costs nothing on the normal path). Only an input
already gone from ``AST_IN`` (past its limits) is rejected with the captured event instead."""

from __future__ import annotations

import asyncio

import msgspec
import structlog
from nats.js.errors import NotFoundError

from services.csp_enrichment.core import STAGE, enrich, pass_on, with_original
from services.runtime.envelopes import events_of
from services.runtime.service import RETRY_MAX_DELAY_S, Emitter, Inbound, Service, binding, transient
from shared import subjects as s
from shared.events import AlertCaptured, AlertEnriched, OutageNotified, RejectedInput
from shared.settings import Settings
from shared.telemetry.logging import log_rejected
from shared.telemetry.tracing import Tracing, setup_tracing

log = structlog.get_logger()


def build(settings: Settings, tracing: Tracing | None = None) -> Service:
    offset = settings.csp_north_offset_ms
    tracing = tracing or setup_tracing(STAGE, settings)

    async def original(rejection: RejectedInput, event: AlertCaptured) -> RejectedInput:
        assert service.js is not None
        delay = 0.25
        while True:
            try:
                raw = await service.js.get_msg(s.STREAM_IN, event.source_seq)  # its headers as stored
                break
            except NotFoundError:
                log.warning("rejected input no longer in its stream; the captured event stands for it",
                            stream=s.STREAM_IN, stream_seq=event.source_seq, response_id=event.response_id)
                return rejection
            except Exception as exc:
                # The broker restarting or a leader moving passes: read it again, as a publish is
                # retried (handing the batch on as a defect would dead-letter good input).
                if not transient(exc) or service.stopping:
                    raise
                log.warning("rejected input not read back yet; reading it again", stream=s.STREAM_IN,
                            stream_seq=event.source_seq, error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY_S)
        return with_original(rejection, raw.subject or rejection.subject, raw.headers, raw.data or b"")

    async def handle(batch: list[Inbound], out: Emitter) -> None:
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
                out.rejected(await original(result, event), key=event.response_id)
            else:
                out.event(s.RESPONSE_SEEN, result)

    service = Service(STAGE, settings, [binding(settings, "csp-enrichment", handle)], tracing=tracing)
    return service

"""dsp-mapping service.

ast.enriched -> ast.deliver (one per delivery) and ast.expected.<p> (for metrics);
ast.in.dsp-delivery, ast.in.dsp-clock -> ast.attempted.<p>, ast.clock.
"""

from __future__ import annotations

import msgspec
import structlog

from services.dsp_mapping.core import (
    DCC_ALERT_CODES,
    STAGE,
    clock_tick,
    deliveries,
    delivery_attempt,
    notice,
    outage_deliveries,
)
from services.runtime.envelopes import events_of
from services.runtime.service import Emitter, Inbound, Service, binding
from shared import subjects as s
from shared.csp_notifications import load as load_notifications
from shared.dcc_rules import RuleTable
from shared.events import (
    AlertEnriched,
    ClockTick,
    DeliveryAttempted,
    DeliveryExpected,
    OutageNotified,
    RejectedInput,
    encoder,
)
from shared.settings import Settings
from shared.telemetry.logging import log_rejected
from shared.telemetry.tracing import Tracing, setup_tracing, trace_fields

log = structlog.get_logger()


def build(settings: Settings, tracing: Tracing | None = None) -> Service:
    rules = RuleTable.load(settings.dcc_rules)
    outage = load_notifications(settings.csp_notifications)
    dcc_codes = DCC_ALERT_CODES | {outage.dcc_alert_code}
    partitions = settings.metrics_partitions
    tracing = tracing or setup_tracing(STAGE, settings)

    def handle_alerts(batch: list[Inbound], out: Emitter) -> None:
        for msg, event in events_of(batch, STAGE, out):
            made: list[DeliveryExpected]
            if isinstance(event, OutageNotified):
                made = outage_deliveries(event, outage)
                if not made:
                    log.debug("power outage too short for a DCC alert", response_id=event.response_id,
                              outage_duration_s=event.outage_duration_s, **trace_fields(event.trace))
            elif isinstance(event, AlertEnriched):
                made, flags = deliveries(event, rules)
                if flags:
                    log.debug("alert to the ACB raises no DCC alert", response_id=event.response_id,
                              alert_code=event.alert_code, subject=msg.subject, **trace_fields(event.trace))
            else:
                continue
            for expected in made:
                if tracing.enabled:  # one span per delivery: the DCC alerts are children of the device alert
                    expected = msgspec.structs.replace(expected, trace=tracing.step(
                        "dsp-mapping deliver", expected.trace, msg.stream_time_ms, **{
                            "alert.response_id": expected.response_id, "alert.delivery_id": expected.delivery_id,
                            "alert.category": expected.category, "alert.dcc_code": expected.dcc_alert_code,
                            "alert.service_user_id": expected.service_user_id}))
                # the context travels on even when this service does not trace (the source's, if any)
                headers = {"traceparent": expected.trace} if expected.trace else None
                out.single(s.DELIVER, encoder.encode(notice(expected)), f"dlv:{expected.delivery_id}", headers,
                           key=expected.response_id)
                out.event(s.expected(s.partition_of(expected.delivery_id, partitions)), expected)

    def handle_log(batch: list[Inbound], out: Emitter) -> None:
        for msg in batch:
            event: ClockTick | DeliveryAttempted | RejectedInput
            if msg.subject == s.IN_DSP_CLOCK:
                event = clock_tick(msg, settings)
                if isinstance(event, ClockTick):
                    out.event(s.CLOCK, event)
                    continue
            else:
                event = delivery_attempt(msg, settings, dcc_codes)
                if isinstance(event, DeliveryAttempted):
                    parent = msg.headers.get("traceparent")
                    if parent and tracing.enabled:  # the delivery side handed the context back
                        tracing.step("dsp-mapping delivery log", parent, msg.stream_time_ms, **{
                            "alert.response_id": event.response_id, "alert.delivery_id": event.delivery_id,
                            "alert.delivery_outcome": event.outcome, "messaging.destination.name": msg.subject})
                    out.event(s.attempted(s.partition_of(event.delivery_id, partitions)), event)
                    continue
            log_rejected(event)
            out.rejected(event)

    return Service(STAGE, settings, [
        binding(settings, "dsp-mapping", handle_alerts),
        binding(settings, "dsp-mapping-delivery", handle_log),
    ], tracing=tracing)

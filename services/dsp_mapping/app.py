"""dsp-mapping service.

ast.enriched -> ast.deliver (one per delivery) and ast.expected.<p> (for metrics);
ast.in.dsp-delivery, ast.in.dsp-clock -> ast.attempted.<p>, ast.clock.
"""

from __future__ import annotations

import msgspec
import structlog

from services.dsp_mapping.core import STAGE, clock_tick, deliveries, delivery_attempt, notice
from services.envelopes import events_of
from services.runtime import Binding, Emitter, Inbound, Service
from shared import subjects as s
from shared.dcc_rules import RuleTable
from shared.events import AlertEnriched, ClockTick, DeliveryAttempted, encoder
from shared.settings import Settings
from shared.telemetry import setup_tracing

log = structlog.get_logger()


def build(settings: Settings) -> Service:
    rules = RuleTable.load(settings.dcc_rules)
    partitions = settings.metrics_partitions
    tracing = setup_tracing(STAGE)

    def handle_alerts(batch: list[Inbound], out: Emitter) -> None:
        for _, event in events_of(batch, STAGE, out):
            if not isinstance(event, AlertEnriched):
                continue
            made, flags = deliveries(event, rules)
            if flags:
                log.debug("alert to the ACB raises no DCC alert", response_id=event.response_id,
                          alert_code=event.alert_code)
            for expected in made:
                headers = None
                if tracing.enabled:  # one span per delivery: the DCC alerts are children of the device alert
                    expected = msgspec.structs.replace(expected, trace=tracing.step(
                        "dsp-mapping deliver", expected.trace, **{"alert.response_id": expected.response_id,
                                                                  "alert.delivery_id": expected.delivery_id,
                                                                  "alert.dcc_code": expected.dcc_alert_code}))
                    headers = {"traceparent": expected.trace} if expected.trace else None
                out.single(s.DELIVER, encoder.encode(notice(expected)), f"dlv:{expected.delivery_id}", headers)
                out.event(s.expected(s.partition_of(expected.delivery_id, partitions)), expected)

    def handle_log(batch: list[Inbound], out: Emitter) -> None:
        for msg in batch:
            if msg.subject == s.IN_DSP_CLOCK:
                event = clock_tick(msg, settings)
                if isinstance(event, ClockTick):
                    out.event(s.CLOCK, event)
                    continue
            else:
                event = delivery_attempt(msg, settings)
                if isinstance(event, DeliveryAttempted):
                    out.event(s.attempted(s.partition_of(event.delivery_id, partitions)), event)
                    continue
            out.rejected(event)

    return Service(STAGE, settings, [
        Binding(s.STREAM_EVENTS, "dsp-mapping", s.ENRICHED, handle_alerts),
        Binding(s.STREAM_IN, "dsp-mapping-delivery", s.IN_DSP_DELIVERY, handle_log),
    ], tracing=tracing)

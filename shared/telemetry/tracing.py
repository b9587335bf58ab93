"""Traces: one alert is one trace across the services, and the alert-journey trace of a
finished record.

Configured from the standard OpenTelemetry environment (``shared.telemetry.otel``); nothing
set: a no-op that creates no spans at all. The journey's own sampling comes from ``Settings``
(ALERT_TIMING_JOURNEY_SAMPLE_RATIO, ALERT_TIMING_JOURNEY_OUTLIER_MS).

An alert's context travels in the `traceparent` header of per-message subjects (inputs,
ast.deliver, ast.record) and, inside batch envelopes, in each event's `trace` field (a header
holds one context, an envelope many).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler, SamplingResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from shared.events import JOURNEY_LEGS, TIMING_POINTS, AstRecord
from shared.settings import Settings, load
from shared.telemetry import otel
from shared.timefmt import parse_iso

#: Span attribute that marks the spans of an alert-journey trace (kept whatever the
#: OTEL_TRACES_SAMPLER says: the journey has its own sampling, ratio plus outliers).
JOURNEY_ATTRIBUTE = "alert.journey"
JOURNEY_POINTS = TIMING_POINTS

_propagator = TraceContextTextMapPropagator()
_ROOT = Context()


@dataclass
class Tracing:
    """Per-alert spans for one service; every call is a cheap no-op when disabled."""

    service: str
    tracer: otel_trace.Tracer | None = None
    provider: TracerProvider | None = None
    journey_ratio: float = 0.01
    journey_outlier_ms: int = 10_000

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    def step(self, name: str, parent: str | None, start_ms: int | None = None, **attributes: Any) -> str | None:
        """A span for one alert at this step, child of ``parent`` (a W3C traceparent) or the
        root of a new trace; returns the traceparent to hand on. ``start_ms`` (epoch ms): when
        the input was stored in JetStream, so the span shows queueing as well as the work."""
        tracer = self.tracer
        if tracer is None:
            return parent
        context = _parent_context(parent) if parent else _ROOT
        now = time.time_ns()
        start = min(start_ms * 1_000_000, now) if start_ms else now
        span = tracer.start_span(name, context=context, attributes=_clean(attributes),
                                 kind=otel_trace.SpanKind.CONSUMER, start_time=start)
        span.end(end_time=now)
        return traceparent_of(span.get_span_context()) or parent

    def journey(self, record: AstRecord, parent: str | None) -> bool:
        """The alert-journey trace of a finished record: spans placed at its real timing
        points, so a tracing UI shows where the time went. Its own trace, linked to the
        record's span in the alert's trace. Sampled by ratio (deterministic per delivery),
        always for outliers (end to end at or over the threshold). True when emitted."""
        tracer = self.tracer
        if tracer is None:
            return False
        e2e = record.end_to_end_ms
        outlier = e2e is not None and e2e >= self.journey_outlier_ms
        if not outlier and not sampled(record.delivery_id, self.journey_ratio):
            return False
        at = {name: parse_iso(v) for name in JOURNEY_POINTS if (v := getattr(record, name)) is not None}
        if len(at) < 2:
            return False
        ns = 1_000_000
        root = tracer.start_span(
            " ".join(filter(None, ("alert journey", record.alert_code, record.dcc_alert_code))),
            context=Context(), start_time=min(at.values()) * ns, links=_links_to(parent),
            kind=otel_trace.SpanKind.INTERNAL, attributes=_journey_attributes(record, outlier))
        ctx = otel_trace.set_span_in_context(root)
        for point, moment in at.items():
            root.add_event(point, timestamp=moment * ns)
        for name, a, b in JOURNEY_LEGS:
            if a in at and b in at:
                span = tracer.start_span(name, context=ctx, start_time=min(at[a], at[b]) * ns,
                                         kind=otel_trace.SpanKind.INTERNAL,
                                         attributes={JOURNEY_ATTRIBUTE: True, "leg.ms": at[b] - at[a],
                                                     "leg.from": a, "leg.to": b, "leg.clock_skew": at[b] < at[a]})
                span.end(end_time=max(at[a], at[b]) * ns)
        root.end(end_time=max(at.values()) * ns)
        return True

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def _links_to(parent: str | None) -> list[otel_trace.Link]:
    if parent:
        linked = otel_trace.get_current_span(_parent_context(parent)).get_span_context()
        if linked.is_valid:
            return [otel_trace.Link(linked, {"link.reason": "alert processing trace"})]
    return []


def _journey_attributes(record: AstRecord, outlier: bool) -> dict[str, Any]:
    return _clean({JOURNEY_ATTRIBUTE: True, "alert.response_id": record.response_id,
                   "alert.delivery_id": record.delivery_id, "alert.region": record.region,
                   "alert.category": record.category, "alert.status": record.status,
                   "alert.revision": record.revision, "alert.end_to_end_ms": record.end_to_end_ms,
                   "alert.outlier": outlier, "alert.flags": ",".join(record.flags),
                   **{f"alert.{k}": getattr(record, k) for k in JOURNEY_POINTS}})


def _parent_context(traceparent: str) -> Context:
    """The context a W3C traceparent names (version 00 parsed directly, on the hot path; the
    propagator for anything else). Invalid: a new trace."""
    parts = traceparent.split("-")
    if len(parts) == 4 and parts[0] == "00" and len(parts[1]) == 32 and len(parts[2]) == 16 and len(parts[3]) == 2:
        try:
            trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
        except ValueError:
            return _ROOT
        if not trace_id or not span_id:
            return _ROOT
        ctx = otel_trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=otel_trace.TraceFlags(flags))
        return otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(ctx), _ROOT)
    return _propagator.extract({"traceparent": traceparent}, context=_ROOT)


def traceparent_of(ctx: otel_trace.SpanContext) -> str | None:
    """The W3C traceparent of a span context (None when it is not valid)."""
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def trace_fields(traceparent: str | None) -> dict[str, str]:
    """``trace_id``/``span_id`` of a traceparent, for a log line about one alert."""
    if traceparent:
        parts = traceparent.split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
            return {"trace_id": parts[1], "span_id": parts[2]}
    return {}


def sampled(key: str, ratio: float) -> bool:
    """Deterministic sampling: the same alert is always in or out, in every replica."""
    if ratio >= 1.0:
        return True
    if ratio <= 0.0:
        return False
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < ratio * 2**64


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


class TraceIndex(dict[str, str]):
    """delivery id -> traceparent, held until the record is joined; bounded (the oldest
    entries go first), so deliveries that never complete cannot grow it without end."""

    def __init__(self, limit: int = 200_000) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: str, value: str) -> None:
        if key not in self and len(self) >= self.limit:
            del self[next(iter(self))]
        super().__setitem__(key, value)


class JourneySampler(Sampler):
    """OTEL_TRACES_SAMPLER for the per-hop spans; the journey's spans are already sampled."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: otel_trace.SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[otel_trace.Link] | None = None,
                      trace_state: otel_trace.TraceState | None = None) -> SamplingResult:
        sampler = ALWAYS_ON if attributes and attributes.get(JOURNEY_ATTRIBUTE) else self.inner
        return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"AlertJourney{{{self.inner.get_description()}}}"


def _env_sampler() -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name, as the SDK reads them."""
    return TracerProvider(shutdown_on_exit=False).sampler


def setup_tracing(service: str, settings: Settings | None = None, exporter: SpanExporter | None = None) -> Tracing:
    """Tracing from the OTEL_* environment and the settings (default: from the environment),
    or to a given exporter (e.g. in-memory in tests, exported span by span). A setting that
    cannot be used is a ``ConfigError``."""
    settings = settings or load()
    ratio, outlier = settings.journey_sample_ratio, settings.journey_outlier_ms
    names = otel.exporter_names("traces")
    if exporter is None and not names:
        return Tracing(service, journey_ratio=ratio, journey_outlier_ms=outlier)
    provider = TracerProvider(resource=otel.resource(service), sampler=JourneySampler(_env_sampler()))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for name in names:
            chosen = otel.otlp_span_exporter() if name == "otlp" else ConsoleSpanExporter(out=sys.stderr)
            provider.add_span_processor(BatchSpanProcessor(chosen))
    return Tracing(service, provider.get_tracer("alert-timing"), provider, ratio, outlier)

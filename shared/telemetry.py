"""Logging (structlog: JSON lines, or readable console on a TTY) for every command."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def setup_logging(service: str, level: str | None = None) -> None:
    level_name = (level or os.environ.get("ALERT_TIMING_LOG_LEVEL", "INFO")).upper()
    numeric = getattr(logging, level_name, logging.INFO)
    renderer: structlog.types.Processor
    if sys.stderr.isatty():
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _service(service),
            add_trace_ids,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # faststream logs every batch at INFO: keep it to warnings and errors.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("faststream").setLevel(logging.WARNING)


def _service(name: str) -> structlog.types.Processor:
    def add(_: object, __: str, event: dict) -> dict:
        event.setdefault("service", name)
        return event

    return add


# =========================================================================== tracing
#
# Configured from the standard environment: OTEL_SERVICE_NAME, OTEL_TRACES_EXPORTER
# (otlp | console | none), OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
# (OTLP over HTTP), OTEL_TRACES_SAMPLER(_ARG). Nothing set: a no-op, at no cost.
#
# One alert is one trace across the services. Its context travels in the `traceparent`
# header of per-message subjects (inputs, ast.deliver, ast.record) and, inside batch
# envelopes, in each event's `trace` field (a header holds one context, an envelope many).

import hashlib  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

from opentelemetry import trace as otel_trace  # noqa: E402
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator  # noqa: E402

_propagator = TraceContextTextMapPropagator()


def _exporter_name(kind: str) -> str:
    explicit = os.environ.get(f"OTEL_{kind}_EXPORTER")
    if explicit:
        return explicit.split(",")[0].strip().lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(f"OTEL_EXPORTER_OTLP_{kind}_ENDPOINT")
    return "otlp" if endpoint else "none"


@dataclass
class Tracing:
    """Per-alert spans for one service; every call is a cheap no-op when disabled."""

    service: str
    tracer: Any = None
    provider: Any = None
    journey_ratio: float = 0.0
    journey_outlier_ms: int = 10_000

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    def step(self, name: str, parent: str | None, **attributes: Any) -> str | None:
        """A span for one alert at this step, child of ``parent`` (a W3C traceparent) or a
        new trace; returns the traceparent to hand on."""
        if self.tracer is None:
            return parent
        context = _propagator.extract({"traceparent": parent}) if parent else None
        span = self.tracer.start_span(name, context=context, attributes=_clean(attributes),
                                      kind=otel_trace.SpanKind.CONSUMER)
        span.end()
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=otel_trace.set_span_in_context(span))
        return carrier.get("traceparent", parent)

    def journey(self, record: Any, parent: str | None) -> None:
        """The alert-journey trace: spans placed at the real timing points of a finished
        record, so a tracing UI shows where the time went. Sampled by ratio, always for
        outliers (end to end over the threshold)."""
        if self.tracer is None:
            return
        e2e = record.end_to_end_ms
        outlier = e2e is not None and e2e >= self.journey_outlier_ms
        if not outlier and not sampled(record.delivery_id, self.journey_ratio):
            return
        from shared.timefmt import parse_iso

        points = [(name, parse_iso(v)) for name in ("device_alert_time", "chf_received", "csp_received", "csp_sent",
                                                    "dsp_received", "su_passed", "su_acknowledged")
                  if (v := getattr(record, name)) is not None]
        if len(points) < 2:
            return
        start = min(t for _, t in points)
        end = max(t for _, t in points)
        links = []
        if parent:
            linked = otel_trace.get_current_span(_propagator.extract({"traceparent": parent})).get_span_context()
            links = [otel_trace.Link(linked)]
        root = self.tracer.start_span(
            f"alert journey {record.alert_code or ''} {record.dcc_alert_code or ''}".strip(),
            start_time=start * 1_000_000, links=links, kind=otel_trace.SpanKind.INTERNAL,
            attributes=_clean({"alert.response_id": record.response_id, "alert.delivery_id": record.delivery_id,
                               "alert.region": record.region, "alert.status": record.status,
                               "alert.end_to_end_ms": e2e, "alert.outlier": outlier,
                               "alert.flags": ",".join(record.flags)}))
        ctx = otel_trace.set_span_in_context(root)
        legs = (("hub to CSP", "chf_received", "csp_received"), ("CSP processing", "csp_received", "csp_sent"),
                ("CSP to DSP", "csp_sent", "dsp_received"), ("DSP to Service User", "dsp_received", "su_passed"),
                ("Service User handshake", "su_passed", "su_acknowledged"))
        at = dict(points)
        if "device_alert_time" in at:
            root.add_event("device alert time", timestamp=at["device_alert_time"] * 1_000_000)
        for name, a, b in legs:
            if a in at and b in at:
                span = self.tracer.start_span(name, context=ctx, start_time=min(at[a], at[b]) * 1_000_000,
                                              attributes={"leg.ms": at[b] - at[a], "leg.from": a, "leg.to": b})
                span.end(end_time=max(at[a], at[b]) * 1_000_000)
        root.end(end_time=end * 1_000_000)

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


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


def setup_tracing(service: str, exporter: Any = None) -> Tracing:
    """Tracing from the OTEL_* environment (or a given exporter, e.g. in-memory in tests)."""
    name = _exporter_name("TRACES")
    ratio = float(os.environ.get("ALERT_TIMING_JOURNEY_SAMPLE_RATIO", "0.01"))
    outlier = int(os.environ.get("ALERT_TIMING_JOURNEY_OUTLIER_MS", "10000"))
    if exporter is None and name in ("none", ""):
        return Tracing(service, journey_ratio=ratio, journey_outlier_ms=outlier)
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER(_ARG)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif name == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    elif name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        raise SystemExit(f"alert-timing: OTEL_TRACES_EXPORTER={name!r} is not one of otlp, console, none")
    return Tracing(service, provider.get_tracer("alert-timing"), provider, ratio, outlier)


def add_trace_ids(_: object, __: str, event: dict) -> dict:
    """structlog: the current span's ids on every log line."""
    span = otel_trace.get_current_span()
    ctx = span.get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", f"{ctx.trace_id:032x}")
        event.setdefault("span_id", f"{ctx.span_id:016x}")
    return event


# =========================================================================== metrics
#
# OTEL_METRICS_EXPORTER (otlp | console | none); same endpoint variables as traces.


@dataclass
class Metrics:
    counters: dict[str, Any] = field(default_factory=dict)
    histograms: dict[str, Any] = field(default_factory=dict)
    provider: Any = None
    gauges: dict[tuple[str, str], int] = field(default_factory=dict)  # (stream, durable) -> pending

    def add(self, name: str, value: int, **attributes: Any) -> None:
        counter = self.counters.get(name)
        if counter is not None and value:
            counter.add(value, attributes)

    def record(self, name: str, value: float, **attributes: Any) -> None:
        histogram = self.histograms.get(name)
        if histogram is not None:
            histogram.record(value, attributes)

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


COUNTERS = {
    "alert_timing.messages.in": "messages taken from a consumer",
    "alert_timing.messages.out": "messages published",
    "alert_timing.messages.rejected": "inputs published to ast.rejected.<stage>",
    "alert_timing.batches.retried": "batches NAKed for a later retry (transient failure)",
    "alert_timing.windows.closed": "15-minute windows closed (first revision)",
    "alert_timing.windows.revised": "revised window reports (revision > 1)",
    "alert_timing.records": "AST records published (incl. revisions)",
}


def setup_metrics(service: str) -> Metrics:
    name = _exporter_name("METRICS")
    if name in ("none", ""):
        return Metrics()
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter: Any = OTLPMetricExporter()
    elif name == "console":
        exporter = ConsoleMetricExporter(out=sys.stderr)
    else:
        raise SystemExit(f"alert-timing: OTEL_METRICS_EXPORTER={name!r} is not one of otlp, console, none")
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(exporter)])
    meter = provider.get_meter("alert-timing")
    metrics = Metrics(provider=provider)
    for counter, description in COUNTERS.items():
        metrics.counters[counter] = meter.create_counter(counter, description=description)
    metrics.histograms["alert_timing.leg"] = meter.create_histogram(
        "alert_timing.leg", unit="ms", description="leg latency of finished AST records (by leg)")

    def lag(_: Any) -> list:
        from opentelemetry.metrics import Observation

        return [Observation(v, {"stream": st, "durable": d}) for (st, d), v in metrics.gauges.items()]

    meter.create_observable_gauge("alert_timing.consumer.pending", callbacks=[lag],
                                  description="messages waiting in the service's durable consumer")
    return metrics

"""Telemetry for every command: logs (structlog: JSON lines, or readable console on a TTY),
OpenTelemetry traces and metrics."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from structlog.types import EventDict

from shared.events import JOURNEY_LEGS, TIMING_POINTS
from shared.timefmt import parse_iso


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
    def add(_: object, __: str, event: EventDict) -> EventDict:
        event.setdefault("service", name)
        return event

    return add


# =========================================================================== tracing
#
# Configured from the standard environment: OTEL_SERVICE_NAME, OTEL_TRACES_EXPORTER
# (otlp | console | none, or a comma-separated list), OTEL_EXPORTER_OTLP_ENDPOINT /
# OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (OTLP over HTTP unless OTEL_EXPORTER_OTLP_PROTOCOL says
# grpc), OTEL_TRACES_SAMPLER(_ARG), OTEL_BSP_* and OTEL_SDK_DISABLED. Nothing set: a no-op
# that creates no spans at all.
#
# One alert is one trace across the services. Its context travels in the `traceparent`
# header of per-message subjects (inputs, ast.deliver, ast.record) and, inside batch
# envelopes, in each event's `trace` field (a header holds one context, an envelope many).

_propagator = TraceContextTextMapPropagator()
_log = structlog.get_logger()

#: Span attribute that marks the spans of an alert-journey trace (kept whatever the
#: OTEL_TRACES_SAMPLER says: the journey has its own sampling, ratio plus outliers).
JOURNEY_ATTRIBUTE = "alert.journey"

JOURNEY_POINTS = TIMING_POINTS


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _exporter_names(kind: str) -> list[str]:
    """OTEL_<KIND>_EXPORTER as a list; unset, OTLP when an endpoint is given, else none."""
    if _sdk_disabled():
        return []
    explicit = os.environ.get(f"OTEL_{kind}_EXPORTER")
    if explicit:
        names = [n.strip().lower() for n in explicit.split(",") if n.strip()]
        return [n for n in names if n != "none"] if "none" not in names else []
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(f"OTEL_EXPORTER_OTLP_{kind}_ENDPOINT")
    return ["otlp"] if endpoint else []


def _otlp_grpc(kind: str) -> bool:
    protocol = (os.environ.get(f"OTEL_EXPORTER_OTLP_{kind}_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip().lower()
    if protocol == "grpc":
        return True
    if protocol not in ("http/protobuf", "http"):
        raise SystemExit(f"alert-timing: OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not one of http/protobuf, grpc")
    return False


def _otlp_exporter(kind: str) -> Any:
    """An OTLP exporter for traces or metrics, its endpoint and headers from the environment."""
    signal = {"TRACES": "trace", "METRICS": "metric"}[kind]
    cls = {"TRACES": "OTLPSpanExporter", "METRICS": "OTLPMetricExporter"}[kind]
    if _otlp_grpc(kind):
        try:
            module = __import__(f"opentelemetry.exporter.otlp.proto.grpc.{signal}_exporter", fromlist=[cls])
        except ImportError:
            raise SystemExit("alert-timing: OTLP over gRPC needs opentelemetry-exporter-otlp-proto-grpc; "
                             "OTLP over HTTP (the default) is installed") from None
    else:
        module = __import__(f"opentelemetry.exporter.otlp.proto.http.{signal}_exporter", fromlist=[cls])
    return getattr(module, cls)()


def _float_env(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        raise SystemExit(f"alert-timing: {name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise SystemExit(f"alert-timing: {name}={raw!r} is not between {low:g} and {high:g}")
    return value


@dataclass
class Tracing:
    """Per-alert spans for one service; every call is a cheap no-op when disabled."""

    service: str
    tracer: Any = None
    provider: Any = None
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

    def journey(self, record: Any, parent: str | None) -> bool:
        """The alert-journey trace of a finished record: spans placed at its real timing
        points, so a tracing UI shows where the time went. Its own trace, linked to the
        record's span in the alert's trace. Sampled by ratio (deterministic per delivery),
        always for outliers (end to end at or over the threshold). True when emitted."""
        if self.tracer is None:
            return False
        e2e = record.end_to_end_ms
        outlier = e2e is not None and e2e >= self.journey_outlier_ms
        if not outlier and not sampled(record.delivery_id, self.journey_ratio):
            return False
        at = {name: parse_iso(v) for name in JOURNEY_POINTS if (v := getattr(record, name)) is not None}
        if len(at) < 2:
            return False
        links = []
        if parent:
            linked = otel_trace.get_current_span(_parent_context(parent)).get_span_context()
            if linked.is_valid:
                links = [otel_trace.Link(linked, {"link.reason": "alert processing trace"})]
        ns = 1_000_000
        root = self.tracer.start_span(
            " ".join(filter(None, ("alert journey", record.alert_code, record.dcc_alert_code))),
            context=Context(), start_time=min(at.values()) * ns, links=links, kind=otel_trace.SpanKind.INTERNAL,
            attributes=_clean({JOURNEY_ATTRIBUTE: True, "alert.response_id": record.response_id,
                               "alert.delivery_id": record.delivery_id, "alert.region": record.region,
                               "alert.category": record.category, "alert.status": record.status,
                               "alert.revision": record.revision, "alert.end_to_end_ms": e2e,
                               "alert.outlier": outlier, "alert.flags": ",".join(record.flags),
                               **{f"alert.{k}": getattr(record, k) for k in JOURNEY_POINTS}}))
        ctx = otel_trace.set_span_in_context(root)
        for point, moment in at.items():
            root.add_event(point, timestamp=moment * ns)
        for name, a, b in JOURNEY_LEGS:
            if a in at and b in at:
                span = self.tracer.start_span(name, context=ctx, start_time=min(at[a], at[b]) * ns,
                                              kind=otel_trace.SpanKind.INTERNAL,
                                              attributes={JOURNEY_ATTRIBUTE: True, "leg.ms": at[b] - at[a],
                                                          "leg.from": a, "leg.to": b,
                                                          "leg.clock_skew": at[b] < at[a]})
                span.end(end_time=max(at[a], at[b]) * ns)
        root.end(end_time=max(at.values()) * ns)
        return True

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


_ROOT = Context()


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


def traceparent_of(ctx: Any) -> str | None:
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


class TraceIndex(dict):
    """delivery id -> traceparent, held until the record is joined; bounded (the oldest
    entries go first), so deliveries that never complete cannot grow it without end."""

    def __init__(self, limit: int = 200_000) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: str, value: str) -> None:
        if key not in self and len(self) >= self.limit:
            del self[next(iter(self))]
        super().__setitem__(key, value)


def _journey_sampler(inner: Any) -> Any:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler

    class JourneySampler(Sampler):
        """OTEL_TRACES_SAMPLER for the per-hop spans; the journey's spans are already sampled."""

        def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
                          attributes: Any = None, links: Any = None, trace_state: Any = None) -> Any:
            if attributes and attributes.get(JOURNEY_ATTRIBUTE):
                return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
            return inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"AlertJourney{{{inner.get_description()}}}"

    return JourneySampler()


def _resource(service: str) -> Any:
    return _instance_resource(service)


def setup_tracing(service: str, exporter: Any = None) -> Tracing:
    """Tracing from the OTEL_* environment, or to a given exporter (e.g. in-memory in tests,
    exported span by span)."""
    ratio = _float_env("ALERT_TIMING_JOURNEY_SAMPLE_RATIO", 0.01, 0.0, 1.0)
    outlier = int(_float_env("ALERT_TIMING_JOURNEY_OUTLIER_MS", 10_000, 0, float("inf")))
    names = _exporter_names("TRACES")
    if exporter is None and not names:
        return Tracing(service, journey_ratio=ratio, journey_outlier_ms=outlier)
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import _get_from_env_or_default

    provider = TracerProvider(resource=_resource(service), sampler=_journey_sampler(_get_from_env_or_default()))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for name in names:
            if name == "otlp":
                provider.add_span_processor(BatchSpanProcessor(_otlp_exporter("TRACES")))
            elif name == "console":
                provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
            else:
                raise SystemExit(f"alert-timing: OTEL_TRACES_EXPORTER={name!r} is not one of otlp, console, none")
    return Tracing(service, provider.get_tracer("alert-timing"), provider, ratio, outlier)


def add_trace_ids(_: object, __: str, event: EventDict) -> EventDict:
    """structlog: the current span's ids on every log line (a line about one alert passes
    its own, see ``trace_fields``)."""
    if "trace_id" in event:
        return event
    ctx = otel_trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = f"{ctx.trace_id:032x}"
        event["span_id"] = f"{ctx.span_id:016x}"
    return event


# =========================================================================== logs


class _Ids(msgspec.Struct):
    """The identities a rejected input may carry (CSP North, CSP feeds, delivery log, events)."""

    responseId: str | None = None
    messageId: str | None = None
    deliveryId: str | None = None
    response_id: str | None = None
    delivery_id: str | None = None
    trace: str | None = None


_ids_decoder = msgspec.json.Decoder(_Ids)


def log_rejected(event: Any, trace: str | None = None) -> None:
    """One warning line for a rejected input: stage, reason, subject, stream sequence, and the
    alert's response id, delivery id and trace ids when the input says them."""
    try:
        ids = _ids_decoder.decode(event.raw)
    except (msgspec.DecodeError, TypeError):
        ids = _Ids()
    fields = trace_fields(trace or (event.headers or {}).get("traceparent") or ids.trace)
    _log.warning("input rejected", stage=event.stage, reason=event.reason, detail=event.message[:200],
                 subject=event.subject, seq=event.source_seq,
                 response_id=ids.responseId or ids.messageId or ids.response_id,
                 **_clean({"delivery_id": ids.deliveryId or ids.delivery_id}), **fields)


# =========================================================================== metrics
#
# OTEL_METRICS_EXPORTER (otlp | console | none); the same endpoint and protocol variables as
# traces; OTEL_METRIC_EXPORT_INTERVAL (ms) for the export period. ALERT_TIMING_PROMETHEUS_PORT
# serves the same metrics for a Prometheus scrape on 127.0.0.1:<port>/metrics (local runs;
# in compose the collector serves them on :8889).
#
# Names follow the OpenTelemetry -> Prometheus conventions (what the collector's prometheus
# exporter and opentelemetry-exporter-prometheus both produce): dots become underscores, the
# unit is a suffix (ms -> _milliseconds, s -> _seconds; annotations such as {message} are
# dropped) and counters end in _total. deploy/prometheus/alerts.yml and the Grafana
# dashboard use those names; PROMETHEUS_NAMES below lists them.


@dataclass
class Metrics:
    counters: dict[str, Any] = field(default_factory=dict)
    histograms: dict[str, Any] = field(default_factory=dict)
    provider: Any = None
    gauges: dict[tuple[str, str], int] = field(default_factory=dict)  # (stream, durable) -> pending
    #: Levels reported as gauges (``LEVELS``): (name, sorted attributes) -> value.
    levels: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    server: Any = None  # the Prometheus scrape endpoint, when ALERT_TIMING_PROMETHEUS_PORT is set

    def add(self, name: str, value: int, **attributes: Any) -> None:
        counter = self.counters.get(name)
        if counter is not None and value:
            counter.add(value, attributes)

    def declare(self, name: str, **attributes: Any) -> None:
        """Export a counter's series at 0 before its first event, so Prometheus sees the first
        increase (a series that appears at 1 has no increase to show)."""
        counter = self.counters.get(name)
        if counter is not None:
            counter.add(0, attributes)

    def record(self, name: str, value: float, **attributes: Any) -> None:
        histogram = self.histograms.get(name)
        if histogram is not None:
            histogram.record(value, attributes)

    def set_level(self, name: str, value: float, **attributes: str) -> None:
        if self.provider is not None:
            self.levels[(name, tuple(sorted(attributes.items())))] = value

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


#: Counters: name -> (unit, description). Counted per batch on the hot path, not per message.
COUNTERS = {
    "alert_timing.messages.in": ("{message}", "messages taken from a consumer"),
    "alert_timing.messages.out": ("{message}", "messages published"),
    "alert_timing.messages.rejected": ("{message}", "inputs published to ast.rejected.<stage>"),
    "alert_timing.batches.retried": (
        "{batch}", "batches retried (outputs published again, or handed back after a defect)"),
    "alert_timing.dead_letters": (
        "{message}", "messages JetStream gave up on (max_deliver), copied to ast.dead-letter.<stage>"),
    "alert_timing.windows.closed": ("{window}", "15-minute windows closed (first revision)"),
    "alert_timing.windows.revised": ("{window}", "revised window reports (revision > 1)"),
    "alert_timing.records": ("{record}", "AST records published on ast.record (incl. revisions)"),
    "alert_timing.metrics.rebuild_gaps": (
        "{message}", "messages acked above the ack floor that a state rebuild could not see"),
}
LEG_HISTOGRAM = "alert_timing.leg"
PENDING_GAUGE = "alert_timing.consumer.pending"
START_GAUGE = "alert_timing.process.start_time"

#: Bucket bounds (ms) of the leg histogram: a leg's p99 in Prometheus is known to within its
#: bucket, so they are dense where the targets are (0.1 s to a minute).
LEG_BUCKETS_MS = (0, 10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1_000, 1_500, 2_000, 2_500, 3_000,
                  4_000, 5_000, 7_500, 10_000, 15_000, 20_000, 30_000, 45_000, 60_000, 120_000, 300_000,
                  600_000)

#: The Service User handshake leg by ``service_user_id`` (complete records, clock skew left out):
#: which Service Users are slow to acknowledge. Its only label is the Service User (a few hundred
#: series of buckets nationally), never a hub.
HANDSHAKE_HISTOGRAM = "alert_timing.handshake"

#: Bucket bounds (ms) of the handshake histogram: from a fast gateway's ~50 ms to minutes, dense
#: around the handshake target (30 s in the packaged targets.toml) so that a p95 above the target
#: is told apart from one at it. A target used by the rules must be one of these bounds.
HANDSHAKE_BUCKETS_MS = (50, 100, 250, 500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000, 25_000,
                        30_000, 40_000, 60_000, 90_000, 120_000, 300_000, 600_000)

#: The histograms the services export: their scrape shows ``<name>_bucket``, ``_count`` and ``_sum``.
HISTOGRAMS = (LEG_HISTOGRAM, HANDSHAKE_HISTOGRAM)

_UNIT_SUFFIX = {"ms": "_milliseconds", "s": "_seconds"}


def prometheus_name(name: str, unit: str, counter: bool) -> str:
    """The name a Prometheus scrape shows for an OpenTelemetry metric (conventions above)."""
    base = name.replace(".", "_") + _UNIT_SUFFIX.get(unit, "")
    return base + "_total" if counter else base


#: Levels a service sets (``Metrics.set_level``), reported as gauges: name -> (unit, description).
LEVELS = {
    "alert_timing.delivery.pending_windows": ("{window}", "window file sets not yet at the DS&A landing zone"),
    "alert_timing.delivery.oldest_pending_age": ("s", "age of the oldest window file set not yet delivered"),
    "alert_timing.delivery.quarantined_windows": (
        "{window}", "window file sets kept out: other content under their names at the DS&A landing zone"),
}

#: OpenTelemetry name -> Prometheus name, for every metric the services export.
PROMETHEUS_NAMES = {
    **{name: prometheus_name(name, unit, True) for name, (unit, _) in COUNTERS.items()},
    LEG_HISTOGRAM: prometheus_name(LEG_HISTOGRAM, "ms", False),
    HANDSHAKE_HISTOGRAM: prometheus_name(HANDSHAKE_HISTOGRAM, "ms", False),
    PENDING_GAUGE: prometheus_name(PENDING_GAUGE, "{message}", False),
    START_GAUGE: prometheus_name(START_GAUGE, "s", False),
    **{name: prometheus_name(name, unit, False) for name, (unit, _) in LEVELS.items()},
}


def prometheus_port() -> int | None:
    """ALERT_TIMING_PROMETHEUS_PORT: serve the metrics for a Prometheus scrape on that loopback port."""
    raw = os.environ.get("ALERT_TIMING_PROMETHEUS_PORT", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SystemExit(f"alert-timing: ALERT_TIMING_PROMETHEUS_PORT={raw!r} is not a port (1-65535)")
    return int(raw)


def _instance_resource(service: str) -> Any:
    """The service's resource with a ``service.instance.id`` that stays the same when the process
    restarts in place (the host name: a container's or pod's), so a restart loop shows as the
    changes of one series, not as new series; OTEL_RESOURCE_ATTRIBUTES may set it instead."""
    import socket

    from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, OTELResourceDetector, Resource

    given = OTELResourceDetector().detect().attributes
    attributes: dict[str, Any] = {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service}
    if SERVICE_INSTANCE_ID not in given:
        attributes[SERVICE_INSTANCE_ID] = socket.gethostname()
    return Resource.create(attributes)


def setup_metrics(service: str, reader: Any = None) -> Metrics:
    """Metrics from the OTEL_* environment and ALERT_TIMING_PROMETHEUS_PORT, or to a given
    reader (e.g. in-memory in tests)."""
    names = _exporter_names("METRICS")
    port = prometheus_port()
    if reader is None and not names and port is None:
        return Metrics()
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

    readers = [reader] if reader is not None else []
    for name in names if reader is None else []:
        if name == "otlp":
            readers.append(PeriodicExportingMetricReader(_otlp_exporter("METRICS")))
        elif name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr)))
        else:
            raise SystemExit(f"alert-timing: OTEL_METRICS_EXPORTER={name!r} is not one of otlp, console, none")
    server = None
    if port is not None and reader is None:
        server, prometheus_reader = _prometheus_endpoint(port)
        readers.append(prometheus_reader)
    legs = View(instrument_name=LEG_HISTOGRAM, aggregation=ExplicitBucketHistogramAggregation(LEG_BUCKETS_MS))
    handshakes = View(instrument_name=HANDSHAKE_HISTOGRAM,
                      aggregation=ExplicitBucketHistogramAggregation(HANDSHAKE_BUCKETS_MS))
    provider = MeterProvider(resource=_instance_resource(service), metric_readers=readers, views=[legs, handshakes])
    meter = provider.get_meter("alert-timing")
    metrics = Metrics(provider=provider, server=server)
    for counter, (unit, description) in COUNTERS.items():
        metrics.counters[counter] = meter.create_counter(counter, unit=unit, description=description)
    metrics.histograms[LEG_HISTOGRAM] = meter.create_histogram(
        LEG_HISTOGRAM, unit="ms", description="leg latency of complete AST records (by leg, region, category)")
    metrics.histograms[HANDSHAKE_HISTOGRAM] = meter.create_histogram(
        HANDSHAKE_HISTOGRAM, unit="ms",
        description="Service User handshake of complete AST records (by service_user_id)")

    def lag(_: Any) -> list:
        from opentelemetry.metrics import Observation

        return [Observation(v, {"stream": st, "durable": d, "service": service})
                for (st, d), v in metrics.gauges.items()]

    meter.create_observable_gauge(PENDING_GAUGE, callbacks=[lag], unit="{message}",
                                  description="messages waiting in the service's durable consumer")

    def level_of(name: str) -> Callable[[Any], list]:
        def observe(_: Any) -> list:
            from opentelemetry.metrics import Observation

            return [Observation(v, dict(attrs)) for (n, attrs), v in metrics.levels.items() if n == name]

        return observe

    for name, (unit, description) in LEVELS.items():
        meter.create_observable_gauge(name, callbacks=[level_of(name)], unit=unit, description=description)

    started = time.time()

    def start(_: Any) -> list:
        from opentelemetry.metrics import Observation

        return [Observation(started, {"service": service})]

    meter.create_observable_gauge(START_GAUGE, callbacks=[start], unit="s",
                                  description="when this process started (Unix time): its changes count restarts")
    return metrics


def _prometheus_endpoint(port: int) -> tuple[Any, Any]:
    """A Prometheus reader and its HTTP endpoint on 127.0.0.1:<port>/metrics."""
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import REGISTRY, start_http_server
    except ImportError:
        raise SystemExit("alert-timing: ALERT_TIMING_PROMETHEUS_PORT needs opentelemetry-exporter-prometheus "
                         "and prometheus-client (pip install alert-timing installs them)") from None
    reader = PrometheusMetricReader()
    try:
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    except OSError as exc:
        raise SystemExit(f"alert-timing: ALERT_TIMING_PROMETHEUS_PORT={port}: cannot listen on 127.0.0.1:{port} "
                         f"({exc.strerror or exc})") from None
    return server, reader

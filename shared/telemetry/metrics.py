"""Metrics: OpenTelemetry instruments, created once as typed attributes of ``Metrics`` (a
misspelt instrument is an AttributeError and a type error, never a silent zero).

OTEL_METRICS_EXPORTER (otlp | console | none); the same endpoint and protocol variables as
traces; OTEL_METRIC_EXPORT_INTERVAL (ms) for the export period. ALERT_TIMING_PROMETHEUS_PORT
(``Settings.prometheus_port``) serves the same metrics for a Prometheus scrape on
127.0.0.1:<port>/metrics (local runs; in compose the collector serves them on :8889).

Names follow the OpenTelemetry -> Prometheus conventions (what the collector's prometheus
exporter and opentelemetry-exporter-prometheus both produce): dots become underscores, the
unit is a suffix (ms -> _milliseconds, s -> _seconds; annotations such as {message} are
dropped) and counters end in _total. deploy/prometheus/alerts.yml and the Grafana dashboard
use those names; PROMETHEUS_NAMES below lists them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from http.server import HTTPServer
from typing import NamedTuple

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from shared.settings import ConfigError, Settings, load
from shared.telemetry import otel


class Instrument(NamedTuple):
    """An instrument's OpenTelemetry name, unit and description."""

    name: str
    unit: str
    description: str


# Counters: counted per batch on the hot path, not per message.
MESSAGES_IN = Instrument("alert_timing.messages.in", "{message}", "messages taken from a consumer")
MESSAGES_OUT = Instrument("alert_timing.messages.out", "{message}", "messages published")
MESSAGES_REJECTED = Instrument("alert_timing.messages.rejected", "{message}",
                               "inputs published to ast.rejected.<stage>")
BATCHES_RETRIED = Instrument("alert_timing.batches.retried", "{batch}",
                             "batches retried (outputs published again, or handed back after a defect)")
DEAD_LETTERS = Instrument("alert_timing.dead_letters", "{message}",
                          "messages JetStream gave up on (max_deliver), copied to ast.dead-letter.<stage>")
WINDOWS_CLOSED = Instrument("alert_timing.windows.closed", "{window}", "15-minute windows closed (first revision)")
WINDOWS_REVISED = Instrument("alert_timing.windows.revised", "{window}", "revised window reports (revision > 1)")
RECORDS = Instrument("alert_timing.records", "{record}", "AST records published on ast.record (incl. revisions)")
REBUILD_GAPS = Instrument("alert_timing.metrics.rebuild_gaps", "{message}",
                          "messages acked above the ack floor that a state rebuild could not see")
COUNTER_INSTRUMENTS = (MESSAGES_IN, MESSAGES_OUT, MESSAGES_REJECTED, BATCHES_RETRIED, DEAD_LETTERS, WINDOWS_CLOSED,
                       WINDOWS_REVISED, RECORDS, REBUILD_GAPS)
#: Counters: name -> (unit, description).
COUNTERS = {c.name: (c.unit, c.description) for c in COUNTER_INSTRUMENTS}

LEG = Instrument("alert_timing.leg", "ms", "leg latency of complete AST records (by leg, region, category)")
LEG_HISTOGRAM = LEG.name
#: Bucket bounds (ms) of the leg histogram: a leg's p99 in Prometheus is known to within its
#: bucket, so they are dense where the targets are (0.1 s to a minute).
LEG_BUCKETS_MS = (0, 10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1_000, 1_500, 2_000, 2_500, 3_000,
                  4_000, 5_000, 7_500, 10_000, 15_000, 20_000, 30_000, 45_000, 60_000, 120_000, 300_000,
                  600_000)

#: The Service User handshake leg by ``service_user_id`` (complete records, clock skew left out):
#: which Service Users are slow to acknowledge. Its only label is the Service User (a few hundred
#: series of buckets nationally), never a hub.
HANDSHAKE = Instrument("alert_timing.handshake", "ms",
                       "Service User handshake of complete AST records (by service_user_id)")
HANDSHAKE_HISTOGRAM = HANDSHAKE.name
#: Bucket bounds (ms) of the handshake histogram: from a fast gateway's ~50 ms to minutes, dense
#: around the handshake target (30 s in the packaged targets.toml) so that a p95 above the target
#: is told apart from one at it. A target used by the rules must be one of these bounds.
HANDSHAKE_BUCKETS_MS = (50, 100, 250, 500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000, 25_000,
                        30_000, 40_000, 60_000, 90_000, 120_000, 300_000, 600_000)

#: The histograms the services export: their scrape shows ``<name>_bucket``, ``_count`` and ``_sum``.
HISTOGRAMS = (LEG_HISTOGRAM, HANDSHAKE_HISTOGRAM)

PENDING = Instrument("alert_timing.consumer.pending", "{message}", "messages waiting in the service's durable consumer")
PENDING_GAUGE = PENDING.name
START = Instrument("alert_timing.process.start_time", "s",
                   "when this process started (Unix time): its changes count restarts")
START_GAUGE = START.name

# Levels a service sets (``Metrics.set_level``), reported as gauges.
PENDING_WINDOWS = Instrument("alert_timing.delivery.pending_windows", "{window}",
                             "window file sets not yet at the DS&A landing zone")
OLDEST_PENDING_AGE = Instrument("alert_timing.delivery.oldest_pending_age", "s",
                                "age of the oldest window file set not yet delivered")
QUARANTINED_WINDOWS = Instrument(
    "alert_timing.delivery.quarantined_windows", "{window}",
    "window file sets kept out: other content under their names at the DS&A landing zone")
LEVEL_INSTRUMENTS = (PENDING_WINDOWS, OLDEST_PENDING_AGE, QUARANTINED_WINDOWS)
#: Levels: name -> (unit, description).
LEVELS = {level.name: (level.unit, level.description) for level in LEVEL_INSTRUMENTS}

_UNIT_SUFFIX = {"ms": "_milliseconds", "s": "_seconds"}


def prometheus_name(name: str, unit: str, counter: bool) -> str:
    """The name a Prometheus scrape shows for an OpenTelemetry metric (conventions above)."""
    base = name.replace(".", "_") + _UNIT_SUFFIX.get(unit, "")
    return base + "_total" if counter else base


#: OpenTelemetry name -> Prometheus name, for every metric the services export.
PROMETHEUS_NAMES = {
    **{c.name: prometheus_name(c.name, c.unit, True) for c in COUNTER_INSTRUMENTS},
    **{i.name: prometheus_name(i.name, i.unit, False) for i in (LEG, HANDSHAKE, PENDING, START)},
    **{level.name: prometheus_name(level.name, level.unit, False) for level in LEVEL_INSTRUMENTS},
}


class Counter:
    """One counter; a no-op when metrics are off."""

    def __init__(self, meter: Meter | None, instrument: Instrument) -> None:
        self.instrument = instrument
        self._counter = (meter.create_counter(instrument.name, unit=instrument.unit,
                                              description=instrument.description) if meter else None)

    def add(self, value: int, **attributes: str) -> None:
        if self._counter is not None and value:
            self._counter.add(value, attributes)

    def declare(self, **attributes: str) -> None:
        """Export the series at 0 before its first event, so Prometheus sees the first increase
        (a series that appears at 1 has no increase to show)."""
        if self._counter is not None:
            self._counter.add(0, attributes)


class Histogram:
    """One histogram; a no-op when metrics are off."""

    def __init__(self, meter: Meter | None, instrument: Instrument) -> None:
        self.instrument = instrument
        self._histogram = (meter.create_histogram(instrument.name, unit=instrument.unit,
                                                  description=instrument.description) if meter else None)

    def record(self, value: float, **attributes: str) -> None:
        if self._histogram is not None:
            self._histogram.record(value, attributes)


Gauge = Callable[[CallbackOptions], Iterable[Observation]]
LevelKey = tuple[str, tuple[tuple[str, str], ...]]


class Metrics:
    """The instruments of one service; every call is a cheap no-op when metrics are off."""

    def __init__(self, service: str = "", meter: Meter | None = None, provider: MeterProvider | None = None,
                 server: HTTPServer | None = None) -> None:
        self.service = service
        self.provider = provider
        self.server = server  # the Prometheus scrape endpoint, when ALERT_TIMING_PROMETHEUS_PORT is set
        self.pending: dict[tuple[str, str], int] = {}  # (stream, durable) -> messages pending
        self.levels: dict[LevelKey, float] = {}  # (name, sorted attributes) -> value
        self.started = time.time()
        self.messages_in = Counter(meter, MESSAGES_IN)
        self.messages_out = Counter(meter, MESSAGES_OUT)
        self.messages_rejected = Counter(meter, MESSAGES_REJECTED)
        self.batches_retried = Counter(meter, BATCHES_RETRIED)
        self.dead_letters = Counter(meter, DEAD_LETTERS)
        self.windows_closed = Counter(meter, WINDOWS_CLOSED)
        self.windows_revised = Counter(meter, WINDOWS_REVISED)
        self.records = Counter(meter, RECORDS)
        self.rebuild_gaps = Counter(meter, REBUILD_GAPS)
        self.leg = Histogram(meter, LEG)
        self.handshake = Histogram(meter, HANDSHAKE)
        if meter is not None:
            self._observe(meter, PENDING, self._pending)
            self._observe(meter, START, self._start)
            for level in LEVEL_INSTRUMENTS:
                self._observe(meter, level, self._level(level.name))

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def set_pending(self, stream: str, durable: str, pending: int) -> None:
        """Messages waiting in a durable consumer (reported as a gauge)."""
        self.pending[(stream, durable)] = pending

    def set_level(self, level: Instrument, value: float, **attributes: str) -> None:
        """A level (one of ``LEVEL_INSTRUMENTS``), reported as a gauge."""
        if level not in LEVEL_INSTRUMENTS:
            raise ValueError(f"{level.name} is not a level")
        if self.provider is not None:
            self.levels[(level.name, tuple(sorted(attributes.items())))] = value

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @staticmethod
    def _observe(meter: Meter, instrument: Instrument, callback: Gauge) -> None:
        meter.create_observable_gauge(instrument.name, callbacks=[callback], unit=instrument.unit,
                                      description=instrument.description)

    def _pending(self, _: CallbackOptions) -> list[Observation]:
        return [Observation(v, {"stream": st, "durable": d, "service": self.service})
                for (st, d), v in self.pending.items()]

    def _start(self, _: CallbackOptions) -> list[Observation]:
        return [Observation(self.started, {"service": self.service})]

    def _level(self, name: str) -> Gauge:
        def observe(_: CallbackOptions) -> list[Observation]:
            return [Observation(v, dict(attrs)) for (n, attrs), v in self.levels.items() if n == name]

        return observe


def setup_metrics(service: str, settings: Settings | None = None, reader: MetricReader | None = None) -> Metrics:
    """Metrics from the OTEL_* environment and the settings' Prometheus port (default: from
    the environment), or to a given reader (e.g. in-memory in tests). A setting that cannot be
    used is a ``ConfigError``."""
    settings = settings or load()
    names = otel.exporter_names("metrics")
    port = settings.prometheus_port
    if reader is None and not names and port is None:
        return Metrics(service)
    readers: list[MetricReader] = [reader] if reader is not None else []
    for name in names if reader is None else []:
        exporter = otel.otlp_metric_exporter() if name == "otlp" else ConsoleMetricExporter(out=sys.stderr)
        readers.append(PeriodicExportingMetricReader(exporter))
    server = None
    if port is not None and reader is None:
        server, prometheus_reader = _prometheus_endpoint(port)
        readers.append(prometheus_reader)
    views = [View(instrument_name=LEG.name, aggregation=ExplicitBucketHistogramAggregation(LEG_BUCKETS_MS)),
             View(instrument_name=HANDSHAKE.name, aggregation=ExplicitBucketHistogramAggregation(HANDSHAKE_BUCKETS_MS))]
    provider = MeterProvider(resource=otel.resource(service), metric_readers=readers, views=views)
    return Metrics(service, provider.get_meter("alert-timing"), provider, server)


def _prometheus_endpoint(port: int) -> tuple[HTTPServer, MetricReader]:
    """A Prometheus reader and its HTTP endpoint on 127.0.0.1:<port>/metrics."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import REGISTRY, start_http_server

    reader = PrometheusMetricReader()
    try:
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
    except OSError as exc:
        raise ConfigError(f"ALERT_TIMING_PROMETHEUS_PORT={port}: cannot listen on 127.0.0.1:{port} "
                          f"({exc.strerror or exc})") from None
    return server, reader


"""Traces across the four services: one trace per alert (fan-out DCC alerts and the
delivery-log join included), the alert-journey trace at the record's timing points, OTLP
over HTTP to a real receiver, and the configuration from the OTEL_* environment.

Each end-to-end test runs its own nats-server: the session ``pipeline`` services (no
tracing) share the session server's durable consumers and would take half the messages.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import nats
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from alert_timing.nats_server import EmbeddedNats
from alert_timing.supervisor import Supervisor, bootstrap
from services.csp_enrichment import app as csp_enrichment
from services.dsp_mapping import app as dsp_mapping
from services.hub_capture import app as hub_capture
from services.metrics import app as metrics_app
from shared import bus
from shared import subjects as s
from shared.events import JOURNEY_LEGS
from shared.settings import ENV_VARS, ConfigError, load
from shared.telemetry import tracing as telemetry
from shared.telemetry.metrics import COUNTERS, Counter, setup_metrics
from shared.telemetry.tracing import JOURNEY_ATTRIBUTE, JOURNEY_POINTS, setup_tracing
from shared.timefmt import parse_iso
from tests.harness.frames import ACB_EUI, alert_payload, delivery_line, north
from tests.harness.jetstream import collect, decoded

DSP = {"Dsp-Received-Timestamp": "20230601101502.500"}
MS = 1_000_000  # ns


@pytest.fixture
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("OTEL_") or name.startswith("ALERT_TIMING_JOURNEY_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "jetstream") as srv:
        yield srv


async def drive_acb_alert(js, response_id: str) -> tuple[list, list[dict]]:
    """One ACB alert in (two DCC alerts out), each delivery acknowledged with the context the
    delivery side received; returns the ast.deliver messages and the two AST records."""
    await js.publish(s.IN_CSP_NORTH, north(response_id, payload=alert_payload("8F3F", recipient=ACB_EUI)),
                     headers=DSP)
    msgs = await collect(js, s.STREAM_EVENTS, [s.DELIVER],
                         lambda got: sum(1 for d in decoded(got) if d["responseId"] == response_id) >= 2)
    deliveries = [m for m in msgs if json.loads(m.data)["responseId"] == response_id]
    assert len(deliveries) == 2
    for m in deliveries:
        d = json.loads(m.data)
        headers = {"traceparent": m.headers["traceparent"]} if m.headers and "traceparent" in m.headers else None
        await js.publish(s.IN_DSP_DELIVERY, delivery_line(d["deliveryId"], response_id, passed="20230601101502.700",
                                                          acked="20230601101503.100", dcc=d["dccAlertCode"],
                                                          user=d["serviceUserId"]), headers=headers)
    out = await collect(js, s.STREAM_OUT, [s.RECORD],
                        lambda got: sum(1 for r in decoded(got) if r["response_id"] == response_id) >= 2)
    records = [m for m in out if json.loads(m.data)["response_id"] == response_id]
    assert len(records) == 2
    return deliveries, records


# --------------------------------------------------------------------------- in process


@pytest.mark.integration
async def test_one_trace_per_alert_across_the_four_services(server, tmp_path, clean_otel_env):
    clean_otel_env.setenv("ALERT_TIMING_JOURNEY_SAMPLE_RATIO", "1")
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    settings = load(nats_url=server.url, data_dir=str(tmp_path / "data"))
    await bootstrap(settings)

    def tracing(name: str):
        return setup_tracing(name, exporter=exporter)

    before = asyncio.all_tasks()
    services = [
        hub_capture.build(settings, tracing=tracing(s.HUB_CAPTURE)),
        csp_enrichment.build(settings, tracing=tracing(s.CSP_ENRICHMENT)),
        dsp_mapping.build(settings, tracing=tracing(s.DSP_MAPPING)),
        metrics_app.build(settings, tracing=tracing(s.METRICS), metrics=setup_metrics(s.METRICS, reader=reader)),
    ]
    nc = await nats.connect(server.url)
    try:
        for service in services:
            await service.app.start()
        deliveries, records = await drive_acb_alert(nc.jetstream(timeout=10), "TR-ACB1")
    finally:
        await nc.close()
        for service in services:
            await service.app.stop()
        for task in asyncio.all_tasks() - before:  # the services' own loops (wall clock, lag)
            task.cancel()
        for service in services:
            service.tracing.shutdown()

    spans = exporter.get_finished_spans()
    alert = [sp for sp in spans if sp.attributes.get("alert.response_id") == "TR-ACB1"
             and not sp.attributes.get(JOURNEY_ATTRIBUTE)]

    def named(name: str) -> list:
        return [sp for sp in alert if sp.name == name]

    [hub] = named("hub-capture")
    [csp] = named("csp-enrichment")
    deliver = {sp.attributes["alert.delivery_id"]: sp for sp in named("dsp-mapping deliver")}
    logged = {sp.attributes["alert.delivery_id"]: sp for sp in named("dsp-mapping delivery log")}
    joined = {sp.attributes["alert.delivery_id"]: sp for sp in named("metrics record")}
    ids = {"TR-ACB1:N39:1", "TR-ACB1:N54:2"}
    assert set(deliver) == set(logged) == set(joined) == ids
    assert len(alert) == 2 + 3 * len(ids)

    # one trace: hub-capture is its root, every other step a child of the one before
    trace_id = hub.context.trace_id
    assert {sp.context.trace_id for sp in alert} == {trace_id}
    assert hub.parent is None
    assert csp.parent.span_id == hub.context.span_id
    for did in ids:
        assert deliver[did].parent.span_id == csp.context.span_id
        assert logged[did].parent.span_id == deliver[did].context.span_id  # the delivery log hop
        assert joined[did].parent.span_id == deliver[did].context.span_id  # the join in metrics
        assert joined[did].attributes["alert.status"] == "complete"
    assert {sp.resource.attributes["service.name"] for sp in alert} == set(s.SERVICES)
    assert hub.resource.attributes["service.name"] == s.HUB_CAPTURE
    assert joined["TR-ACB1:N39:1"].resource.attributes["service.name"] == s.METRICS

    # the context on the wire: ast.deliver and ast.record carry their span's traceparent
    for m in deliveries:
        span = deliver[json.loads(m.data)["deliveryId"]]
        assert m.headers["traceparent"] == telemetry.traceparent_of(span.context)
    for m in records:
        span = joined[json.loads(m.data)["delivery_id"]]
        assert m.headers["traceparent"] == telemetry.traceparent_of(span.context)

    # the journey: its own trace per delivery, linked to the record's span, at the timing points
    journeys: dict[int, list] = {}
    for sp in spans:
        if sp.attributes.get(JOURNEY_ATTRIBUTE):
            journeys.setdefault(sp.context.trace_id, []).append(sp)
    assert len(journeys) == 2 and trace_id not in journeys
    for m in records:
        record = json.loads(m.data)
        at = {p: parse_iso(record[p]) * MS for p in JOURNEY_POINTS}
        [journey] = [j for j in journeys.values()
                     if any(sp.attributes.get("alert.delivery_id") == record["delivery_id"] for sp in j)]
        [root] = [sp for sp in journey if sp.parent is None]
        assert root.name == f"alert journey 8F3F {record['dcc_alert_code']}"
        assert root.start_time == at["device_alert_time"] == min(at.values())
        assert root.end_time == at["su_acknowledged"] == max(at.values())
        assert [link.context.span_id for link in root.links] == [joined[record["delivery_id"]].context.span_id]
        assert {e.name: e.timestamp for e in root.events} == at
        assert root.attributes["alert.end_to_end_ms"] == record["end_to_end_ms"] == 3000
        legs = {sp.name: sp for sp in journey if sp is not root}
        assert set(legs) == {name for name, _, _ in JOURNEY_LEGS}
        for name, a, b in JOURNEY_LEGS:
            leg = legs[name]
            assert leg.parent.span_id == root.context.span_id
            assert (leg.start_time, leg.end_time) == (at[a], at[b]), name
            assert leg.attributes["leg.ms"] == (at[b] - at[a]) // MS
        assert legs["hub to CSP"].attributes["leg.ms"] == record["hub_to_csp_ms"] == 2350
        assert legs["Service User handshake"].attributes["leg.ms"] == record["su_handshake_ms"] == 400

    # the metrics service's OpenTelemetry metrics saw the same records
    reader.collect()
    points = {metric.name: metric.data.data_points
              for rm in reader.get_metrics_data().resource_metrics
              for sm in rm.scope_metrics for metric in sm.metrics}
    assert sum(p.value for p in points["alert_timing.records"] if p.attributes["status"] == "complete") == 2
    e2e = [p for p in points["alert_timing.leg"] if p.attributes["leg"] == "end_to_end_ms"]
    assert sum(p.count for p in e2e) == 2 and e2e[0].max == 3000
    # the handshake by Service User, its only label (never a hub)
    handshakes: dict[str, list[int]] = {}
    for m in records:
        record = json.loads(m.data)
        handshakes.setdefault(record["service_user_id"], []).append(record["su_handshake_ms"])
    by_user = points["alert_timing.handshake"]
    assert all(set(p.attributes) == {"service_user_id"} for p in by_user)
    assert {p.attributes["service_user_id"]: (p.count, p.sum) for p in by_user} == {
        user: (len(ms), sum(ms)) for user, ms in handshakes.items()}
    # envelopes: the expectations in one (or more), the delivery-log events in one (or more)
    assert sum(p.value for p in points["alert_timing.messages.in"]) >= 2
    assert {p.attributes["service"] for p in points["alert_timing.messages.in"]} == {s.METRICS}
    pending = {p.attributes["durable"]: p.value for p in points["alert_timing.consumer.pending"]}
    assert set(pending) == {bus.metrics_durable(0)}


# --------------------------------------------------------------------------- OTLP over HTTP


class OtlpReceiver(ThreadingHTTPServer):
    """A minimal OTLP/HTTP collector on loopback: keeps every trace export request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def spans(self) -> list[tuple[str, object]]:
        """(service.name, span) of everything received so far."""
        with self.lock:
            requests = list(self.requests)
        out = []
        for request in requests:
            for rs in request.resource_spans:
                service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
                out.extend((service, span) for ss in rs.scope_spans for span in ss.spans)
        return out


class _OtlpHandler(BaseHTTPRequestHandler):
    server: OtlpReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with self.server.lock:
            self.server.paths.append(self.path)
            if self.path == "/v1/traces":
                self.server.requests.append(ExportTraceServiceRequest.FromString(body))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    srv = OtlpReceiver()
    thread = threading.Thread(target=srv.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


async def wait_for(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if result or loop.time() > deadline:
            return result
        await asyncio.sleep(0.2)


@pytest.mark.integration
async def test_services_export_one_trace_over_otlp_http(server, receiver, tmp_path, clean_otel_env):
    data_dir = tmp_path / "data"
    settings = load(nats_url=server.url, data_dir=str(data_dir))
    await bootstrap(settings)
    sup = Supervisor(settings, data_dir, server.url)
    for name in s.SERVICES:
        sup.start_service(name, OTEL_SERVICE_NAME=name, OTEL_TRACES_EXPORTER="otlp",
                          OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="200",
                          OTEL_METRICS_EXPORTER="none", ALERT_TIMING_JOURNEY_SAMPLE_RATIO="1",
                          ALERT_TIMING_LOG_LEVEL="INFO")
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream(timeout=10)
        _, records = await drive_acb_alert(js, "TR-OTLP1")
        record_spans = {json.loads(m.data)["delivery_id"]: m.headers["traceparent"] for m in records}
        trace_id = next(iter(record_spans.values())).split("-")[1]
        assert {tp.split("-")[1] for tp in record_spans.values()} == {trace_id}

        def services_in_trace() -> set[str]:
            return {service for service, span in receiver.spans() if span.trace_id.hex() == trace_id}

        got = await wait_for(lambda: services_in_trace() >= set(s.SERVICES) or None)
        assert got, f"services seen in the trace: {sorted(services_in_trace())}; posts: {receiver.paths[:5]}"
        spans = [(service, span) for service, span in receiver.spans() if span.trace_id.hex() == trace_id]
        by_id = {span.span_id: (service, span) for service, span in spans}
        # every span but the root has its parent in the same trace, sent by the service before it
        [root] = [span for _, span in spans if not span.parent_span_id]
        assert root.name == "hub-capture"
        chain = {"csp-enrichment": "hub-capture", "dsp-mapping deliver": "csp-enrichment",
                 "dsp-mapping delivery log": "dsp-mapping deliver", "metrics record": "dsp-mapping deliver"}
        for _service, span in spans:
            if span is not root:
                assert by_id[span.parent_span_id][1].name == chain[span.name]
        assert sorted(span.name for _, span in spans if span.name == "metrics record") == ["metrics record"] * 2
        journeys = await wait_for(lambda: [span for service, span in receiver.spans()
                                           if service == s.METRICS and span.name.startswith("alert journey")
                                           and any(a.key == "alert.response_id" and a.value.string_value == "TR-OTLP1"
                                                   for a in span.attributes)])
        assert len(journeys) == 2 and all(j.trace_id.hex() != trace_id for j in journeys)

        # a rejection is one JSON log line with the subject, the response id and the trace ids
        bad_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        await js.publish(s.IN_CSP_NORTH, north("TR-BAD1", timestamp="2023-06-01T10:15:02"),
                         headers={**DSP, "traceparent": bad_trace})
        log_file = data_dir / "logs" / "hub-capture-0.log"

        def rejection_line() -> dict | None:
            for line in log_file.read_text().splitlines():
                if line.startswith("{") and '"input rejected"' in line and "TR-BAD1" in line:
                    return json.loads(line)
            return None

        line = await wait_for(rejection_line)
        assert line, log_file.read_text()[-2000:]
        assert line["level"] == "warning" and line["service"] == s.HUB_CAPTURE
        assert (line["subject"], line["response_id"], line["reason"]) == (s.IN_CSP_NORTH, "TR-BAD1", "bad_timestamp")
        assert (line["trace_id"], line["span_id"]) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
        assert not sup.check(), f"services died: {sup.check()}"
    finally:
        await nc.close()
        sup.stop()


# --------------------------------------------------------------------------- configuration


def test_tracing_is_off_and_costs_nothing_when_unset(clean_otel_env, monkeypatch):
    tracing = setup_tracing(s.HUB_CAPTURE)
    assert not tracing.enabled and tracing.provider is None
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert tracing.step("hub-capture", parent) == parent  # handed on untouched, no span
    assert tracing.step("hub-capture", None) is None
    assert tracing.journey(SimpleNamespace(end_to_end_ms=99_999), parent) is False
    settings = load(nats_url="nats://127.0.0.1:1")
    for module in (hub_capture, csp_enrichment, dsp_mapping, metrics_app):
        assert not module.build(settings).tracing.enabled
    assert not setup_metrics(s.METRICS).enabled
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not setup_tracing(s.HUB_CAPTURE).enabled
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not setup_tracing(s.HUB_CAPTURE).enabled


@pytest.mark.parametrize("env, processors", [
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["OTLPSpanExporter"]),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, ["OTLPSpanExporter"]),
    ({"OTEL_TRACES_EXPORTER": "console"}, ["ConsoleSpanExporter"]),
    ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["OTLPSpanExporter", "ConsoleSpanExporter"]),
])
def test_exporters_from_the_environment(clean_otel_env, env, processors):
    for key, value in env.items():
        clean_otel_env.setenv(key, value)
    clean_otel_env.setenv("OTEL_SERVICE_NAME", "csp-enrichment-eu1")
    tracing = setup_tracing(s.CSP_ENRICHMENT)
    try:
        assert tracing.enabled
        active = tracing.provider._active_span_processor._span_processors
        assert [type(p.span_exporter).__name__ for p in active] == processors
        assert tracing.provider.resource.attributes["service.name"] == "csp-enrichment-eu1"
        if processors[0] == "OTLPSpanExporter":  # HTTP, /v1/traces on the given (or default) endpoint
            assert active[0].span_exporter._endpoint.endswith(":4318/v1/traces")
    finally:
        tracing.provider._active_span_processor._span_processors = ()  # nothing to flush anywhere
        tracing.shutdown()


@pytest.mark.parametrize("env", [{"OTEL_TRACES_EXPORTER": "zipkin"},
                                 {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
                                 {"ALERT_TIMING_JOURNEY_SAMPLE_RATIO": "2"},
                                 {"ALERT_TIMING_JOURNEY_OUTLIER_MS": "soon"}])
def test_bad_settings_are_one_clear_error(clean_otel_env, env):
    for key, value in env.items():
        clean_otel_env.setenv(key, value)
    with pytest.raises(ConfigError, match=list(env)[-1]):  # the message names the variable
        setup_tracing(s.HUB_CAPTURE)


def journey_record(delivery_id: str, e2e: int | None) -> SimpleNamespace:
    points = dict.fromkeys(JOURNEY_POINTS)
    points.update(chf_received="2023-06-01T10:15:00.100Z", csp_received="2023-06-01T10:15:02.450Z",
                  su_acknowledged="2023-06-01T10:15:03.100Z")  # one leg whole, the rest missing
    return SimpleNamespace(delivery_id=delivery_id, response_id=delivery_id, end_to_end_ms=e2e, alert_code="8F3F",
                           dcc_alert_code=None, region="north", category="device_alert", status="complete",
                           revision=1, flags=[], **points)


def test_journey_sampling_ratio_and_outliers(clean_otel_env):
    """The journey has its own sampling: the ratio (the same answer for a delivery in every
    replica), every outlier, whatever OTEL_TRACES_SAMPLER does to the per-hop spans."""
    clean_otel_env.setenv("OTEL_TRACES_SAMPLER", "always_off")
    clean_otel_env.setenv("ALERT_TIMING_JOURNEY_SAMPLE_RATIO", "0")
    clean_otel_env.setenv("ALERT_TIMING_JOURNEY_OUTLIER_MS", "5000")
    exporter = InMemorySpanExporter()
    tracing = setup_tracing(s.METRICS, exporter=exporter)
    assert (tracing.journey_ratio, tracing.journey_outlier_ms) == (0.0, 5000)
    parent = tracing.step("metrics record", None)  # sampled out, but its context still travels
    assert parent and not int(parent[-2:], 16) & 1 and not exporter.get_finished_spans()  # not sampled
    assert tracing.journey(journey_record("D-fast", 3000), parent) is False
    assert tracing.journey(journey_record("D-slow", 5000), parent) is True
    [root, leg] = sorted(exporter.get_finished_spans(), key=lambda sp: sp.parent is not None)
    assert root.attributes["alert.outlier"] is True and leg.name == "hub to CSP"
    assert (root.start_time, root.end_time) == (parse_iso("2023-06-01T10:15:00.100Z") * MS,
                                               parse_iso("2023-06-01T10:15:03.100Z") * MS)
    assert [f"{link.context.span_id:016x}" for link in root.links] == [parent.split("-")[2]]
    tracing.journey_ratio = 0.5
    chosen = {f"D{i}" for i in range(400) if telemetry.sampled(f"D{i}", 0.5)}
    assert 150 < len(chosen) < 250  # about half, and always the same half
    assert chosen == {f"D{i}" for i in range(400) if telemetry.sampled(f"D{i}", 0.5)}


def test_trace_context_helpers():
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert telemetry.trace_fields(parent) == {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                                              "span_id": "00f067aa0ba902b7"}
    assert telemetry.trace_fields(None) == telemetry.trace_fields("garbage") == {}
    exporter = InMemorySpanExporter()
    tracing = setup_tracing(s.HUB_CAPTURE, exporter=exporter)
    child = tracing.step("hub-capture", parent, start_ms=1_700_000_000_000, **{"alert.response_id": "R1"})
    [span] = exporter.get_finished_spans()
    assert child == telemetry.traceparent_of(span.context)
    assert span.context.trace_id == int("4bf92f3577b34da6a3ce929d0e0e4736", 16)
    assert span.parent.span_id == int("00f067aa0ba902b7", 16) and span.parent.is_remote
    assert span.start_time == 1_700_000_000_000 * MS < span.end_time  # queued since it was stored
    for bad in ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-xyz-00f067aa0ba902b7-01", "junk"):
        fresh = tracing.step("hub-capture", bad)
        assert fresh and fresh.split("-")[1] not in ("0" * 32, "xyz")  # a new trace, not an error
    index = telemetry.TraceIndex(limit=2)
    index["a"], index["b"], index["c"] = "1", "2", "3"
    assert list(index) == ["b", "c"]


def test_metrics_export_to_the_console(clean_otel_env, capsys):
    clean_otel_env.setenv("OTEL_METRICS_EXPORTER", "console")
    metrics = setup_metrics(s.METRICS)
    assert {c.instrument.name for c in vars(metrics).values() if isinstance(c, Counter)} == set(COUNTERS)
    metrics.messages_in.add(3, service=s.METRICS, subject="ast.expected.0")
    metrics.windows_closed.add(1)
    metrics.leg.record(250, leg="dsp_to_su_ms", region="north")
    metrics.set_pending("AST_EVENTS", "metrics-0", 7)
    metrics.shutdown()  # flushes
    out = capsys.readouterr().err
    for name in ("alert_timing.messages.in", "alert_timing.windows.closed", "alert_timing.leg",
                 "alert_timing.consumer.pending"):
        assert name in out
    assert '"durable": "metrics-0"' in out


def test_journey_variables_are_listed():
    assert {"ALERT_TIMING_JOURNEY_SAMPLE_RATIO", "ALERT_TIMING_JOURNEY_OUTLIER_MS"} <= set(ENV_VARS)

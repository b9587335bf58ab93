"""metrics service: joins expectations and the delivery log into AST records, closes
15-minute windows by event time, publishes ``ast.record`` and ``ast.report.15m`` and writes
the window files for DS&A.

State is rebuilt, not hoped for: on start it replays its own input subjects from the event
log up to its durable consumer's ack floor (outputs suppressed; the core is deterministic),
then resumes from the consumer.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from nats.js import JetStreamContext, api

from services.metrics.core import ClosedWindow, MetricsConfig, MetricsCore, Output
from services.metrics.delivery import Deliverer, DeliveryConfigError, landing_from_settings
from services.metrics.files import partition_tag, write_window
from services.metrics.rebuild import read_events
from services.runtime.envelopes import events_of
from services.runtime.service import Binding, Emitter, Inbound, Service, binding
from shared import bus
from shared import subjects as s
from shared.eventlog import read_messages
from shared.events import (
    LEGS,
    AstRecord,
    DeliveryAttempted,
    DeliveryExpected,
    delivered_decoder,
    encoder,
    record_id,
)
from shared.settings import Settings
from shared.telemetry import Metrics, TraceIndex, Tracing, setup_metrics, setup_tracing

log = structlog.get_logger()


def metrics_config(settings: Settings) -> MetricsConfig:
    return MetricsConfig(
        allowed_lateness_ms=int(settings.allowed_lateness_s * 1000),
        handshake_timeout_ms=int(settings.handshake_timeout_s * 1000),
        idle_close_after_s=settings.idle_close_after_s,
    )


def report_id(window_start: str, revision: int, partition: int) -> str:
    return f"report:{partition}:{window_start}:{revision}"


def emit(output: Output, out: Emitter, data_dir: Path | None, partition: int = 0,
         report_subject: str = s.REPORT_15M, record_subject: str = s.RECORD,
         telemetry: tuple[Tracing, Metrics, dict[str, str]] | None = None,
         partitions: int | None = None) -> None:
    """Everything one step of the core produced, as messages and files. ``partition`` names the
    reports (``Nats-Msg-Id``) and, with more than one partition (``partitions``; default: the
    settings), the files."""
    counted: Counter[tuple[str, str, str]] = Counter()
    for record in output.records:
        headers = None
        if telemetry is not None:
            headers = _observe(record, *telemetry)
            counted[(record.status, record.region, record.category)] += 1
        out.single(record_subject, encoder.encode(record), record_id(record.delivery_id, record.revision), headers)
    if telemetry is not None and counted:
        metrics = telemetry[1]

        def count_records() -> None:  # once per batch, when JetStream has the records
            for (status, region, category), n in counted.items():
                metrics.add("alert_timing.records", n, status=status, region=region, category=category)

        out.when_stored.append(count_records)
    latest: dict[str, ClosedWindow] = {}
    for closed in output.closed:
        report = closed.report
        out.single(report_subject, encoder.encode(report), report_id(report.window_start, report.revision, partition))
        latest[report.window_start] = closed
    if telemetry is not None and output.closed:
        windows = telemetry[1]
        first = sum(1 for closed in output.closed if closed.report.revision == 1)

        def count_windows() -> None:
            windows.add("alert_timing.windows.closed", first)
            windows.add("alert_timing.windows.revised", len(output.closed) - first)

        out.when_stored.append(count_windows)
    if data_dir is not None:
        # Files for the latest revision of each window this step touched: every revision is
        # on ast.report.15m, but a burst of late records rewrites a window's files once.
        tag = partition_tag(partition, partitions) if latest else None
        for closed in latest.values():
            write_window(data_dir, closed, tag)


def _observe(record: AstRecord, tracing: Tracing, metrics: Metrics, traces: dict[str, str]) -> dict[str, str] | None:
    """The join span (child of the delivery's trace: one trace from the device alert to its
    record), the journey trace of a complete record, leg histograms (complete records, so a
    revision of an unfinished one does not count its legs twice; clock skew left out)."""
    complete = record.status == "complete"
    if metrics.histograms and complete:
        for leg in LEGS:
            value = getattr(record, leg)
            if value is not None and value >= 0:
                metrics.record("alert_timing.leg", value, leg=leg, region=record.region, category=record.category)
    if not tracing.enabled:
        return None
    parent = traces.pop(record.delivery_id, None) if complete else traces.get(record.delivery_id)
    attributes: dict[str, Any] = {
        "alert.response_id": record.response_id, "alert.delivery_id": record.delivery_id,
        "alert.status": record.status, "alert.revision": record.revision,
        "alert.delivery_attempts": record.delivery_attempts, "alert.end_to_end_ms": record.end_to_end_ms}
    trace = tracing.step("metrics record", parent, **attributes)
    if complete:
        tracing.journey(record, trace)
    return {"traceparent": trace} if trace else None


def partitions_owned(settings: Settings) -> list[int]:
    """The partitions this replica runs: the one it is given, or every one."""
    if settings.metrics_partitions < 1:
        raise SystemExit(f"alert-timing metrics: ALERT_TIMING_METRICS_PARTITIONS={settings.metrics_partitions} "
                         "must be at least 1")
    if settings.metrics_partition is not None:
        if not 0 <= settings.metrics_partition < settings.metrics_partitions:
            raise SystemExit(f"alert-timing metrics: ALERT_TIMING_METRICS_PARTITION={settings.metrics_partition} "
                             f"is not one of the {settings.metrics_partitions} partitions "
                             f"(0..{settings.metrics_partitions - 1})")
        return [settings.metrics_partition]
    return list(range(settings.metrics_partitions))


def build(settings: Settings, tracing: Tracing | None = None, metrics: Metrics | None = None) -> Service:
    data_dir = Path(settings.data_dir)
    bindings: list[Binding] = []
    cores: dict[int, MetricsCore] = {}
    started = int(time.time() * 1000)
    # wall_ms: our last input; log_wall_ms: the delivery log's last message (held fresh while
    # we are behind, so a backlog never reads as a stalled feed); caught_up: nothing pending.
    last_input = {"wall_ms": started, "log_wall_ms": started, "caught_up": True}
    tracing = tracing or setup_tracing(s.METRICS)
    metrics = metrics or setup_metrics(s.METRICS)
    traces: dict[str, str] = TraceIndex()  # delivery id -> trace context, only while tracing is on
    telemetry = (tracing, metrics, traces)
    metrics.declare("alert_timing.windows.closed")
    metrics.declare("alert_timing.windows.revised")

    for p in partitions_owned(settings):
        core = cores[p] = MetricsCore(metrics_config(settings))

        def handle(batch: list[Inbound], out: Emitter, core: MetricsCore = core, p: int = p) -> None:
            now = last_input["wall_ms"] = int(time.time() * 1000)
            pairs = list(events_of(batch, s.METRICS, out))
            events = [event for _, event in pairs]
            # When did the delivery log last speak? Its messages' store times, not when we
            # got round to them: a backlog here is not a stalled feed.
            logged = [m.stream_time_ms for m, e in pairs if type(e) is DeliveryAttempted]
            if logged:
                last_input["log_wall_ms"] = max(last_input["log_wall_ms"], max(logged))
            last_input["caught_up"] = not batch or batch[-1].pending == 0
            if not last_input["caught_up"]:
                last_input["log_wall_ms"] = max(last_input["log_wall_ms"], now - 1000)
            if tracing.enabled:
                for e in events:
                    if isinstance(e, DeliveryExpected) and e.trace:
                        traces[e.delivery_id] = e.trace
            emit(core.apply(events), out, data_dir, p, telemetry=telemetry)

        bindings.append(binding(settings, bus.metrics_durable(p), handle))

    service = Service(s.METRICS, settings, bindings, tracing=tracing, metrics=metrics)

    async def rebuild() -> None:
        """Replay our inputs up to the durable's ack floor into the cores, outputs dropped."""
        js = service.broker.connection.jetstream(timeout=settings.publish_ack_timeout_s)
        for p, core in cores.items():
            info = await js.consumer_info(s.STREAM_EVENTS, bus.metrics_durable(p))
            if info.num_ack_pending:
                info = await _await_held_messages(js, p, info)
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            await _check_acked_above_floor(service, p, info, floor)
            if floor:
                started = time.perf_counter()
                count = 0
                async for events in read_events(service.broker.connection, info.config.filter_subjects or [], 1,
                                                floor):
                    core.apply(events)
                    count += len(events)
                log.info("metrics state rebuilt from the event log", partition=p, up_to_seq=floor,
                         events=count, seconds=round(time.perf_counter() - started, 2))
        # The wall clock counts quiet time from now, not from before the rebuild (and any wait
        # above): a long start must not read as a quiet stream and close windows on the wall
        # clock, a move the event log cannot replay.
        last_input["wall_ms"] = last_input["log_wall_ms"] = int(time.time() * 1000)

    async def wall_clock() -> None:
        """Live runs: a quiet stream still closes windows on the wall clock."""
        # What the core produced on the wall clock but JetStream has not stored yet. The core
        # counts those windows as reported once on_wall_clock returns, so on a failed publish
        # they are kept and published again (same Nats-Msg-Ids) before anything newer, never
        # dropped: dropping them lost the windows' reports until a later revision.
        unsent: list[bus.Outgoing] = []
        when_stored: list[Callable[[], None]] = []  # their counters, once stored
        while True:
            await asyncio.sleep(1.0)
            if service.js is None or service.stopping:
                continue
            if not unsent:
                now = int(time.time() * 1000)
                for p, core in cores.items():
                    out = Emitter()
                    emit(core.on_wall_clock(now, last_input["wall_ms"], last_input["log_wall_ms"]), out, data_dir,
                         p, telemetry=telemetry)
                    unsent.extend(out.messages())
                    when_stored.extend(out.when_stored)
            if unsent:
                try:
                    await bus.publish_all(service.js, unsent, settings.publish_ack_timeout_s)
                    unsent = []
                    for stored in when_stored:
                        stored()
                    when_stored.clear()
                except Exception as exc:  # noqa: BLE001 - transient or not, they are kept and retried
                    log.warning("wall-clock close not published yet; retrying", messages=len(unsent),
                                error=str(exc))

    ticker: dict[str, asyncio.Task] = {}

    async def start_clock() -> None:
        ticker["task"] = asyncio.create_task(wall_clock())

    service.app.on_startup(_connect_first(service, rebuild))
    service.app.after_startup(start_clock)
    if settings.delivery_url:
        deliverer = _deliverer(service, settings, data_dir, list(cores), metrics)

        async def start_delivery() -> None:
            ticker["delivery"] = asyncio.create_task(deliverer.run())

        service.app.after_startup(start_delivery)
    return service


def _deliverer(service: Service, settings: Settings, data_dir: Path, partitions: list[int],
               metrics: Metrics) -> Deliverer:
    """Window files to DS&A's landing zone (``ALERT_TIMING_DELIVERY_URL``), see ``delivery``."""
    try:
        landing = landing_from_settings(settings.delivery_url or "", settings.delivery_key,
                                        settings.delivery_known_hosts)
    except DeliveryConfigError as exc:
        raise SystemExit(f"alert-timing metrics: {exc}") from None

    async def publish(messages: list[bus.Outgoing]) -> None:
        if service.js is None:
            raise RuntimeError("not connected to NATS yet")
        await bus.publish_all(service.js, messages, settings.publish_ack_timeout_s)

    async def read_delivered(partition: int) -> set[str]:
        stems: set[str] = set()
        async for msgs in read_messages(service.broker.connection, s.STREAM_OUT, [s.delivered(partition)], 1):
            for m in msgs:
                event = delivered_decoder.decode(m.data)
                if event.landing == landing.name:
                    stems.add(event.file_set)
        return stems

    def gauge(name: str, value: float, partition: int) -> None:
        metrics.set_level(name, value, partition=str(partition))

    log.info("window files are delivered", landing=landing.name, partitions=partitions)
    return Deliverer(landing, data_dir, partitions, publish, read_delivered,
                     retry_max_s=settings.delivery_retry_max_s, horizon_days=settings.delivery_horizon_days,
                     gauge=gauge)


async def _await_held_messages(js: JetStreamContext, partition: int, info: api.ConsumerInfo) -> api.ConsumerInfo:
    """Wait until the messages a stopped instance held (delivered, never acked: it was killed)
    can be redelivered, i.e. ``ack_wait`` after its last delivery, so that they come back to
    us before anything newer.

    The state is rebuilt from the ack floor only, so it is right only if every acked message
    lies at or below the floor: the core must see its input in stream order. Consuming at
    once took the messages after the held ones first and acked them above the floor; a second
    restart before the held ones came back then rebuilt without those acked events, and their
    records were lost (found by the soak: SIGKILL of metrics twice within ack_wait)."""
    ack_wait = float(info.config.ack_wait or 30.0)
    last: datetime | None
    last = info.delivered.last_active if info.delivered else None
    if last is None:
        wait = ack_wait
    else:
        wait = ack_wait - (datetime.now(UTC) - last).total_seconds()
    wait = max(0.0, wait) + 1.0  # and a moment for the server's redelivery timer
    log.info("waiting for the messages a stopped instance held to be redeliverable", partition=partition,
             held=info.num_ack_pending, seconds=round(wait, 1))
    await asyncio.sleep(wait)
    return await js.consumer_info(s.STREAM_EVENTS, bus.metrics_durable(partition))


async def _check_acked_above_floor(service: Service, partition: int, info: api.ConsumerInfo, floor: int) -> None:
    """Say so, loudly, when messages above the ack floor were acked: the rebuild cannot see them
    (their events are missing from the state, and records may be lost). The service keeps
    their order so this does not happen (in-place publish retries, confirmed acks, a drain on
    shutdown, the wait above); a batch the core itself failed on (NAKed, later dead-lettered)
    still can."""
    delivered = info.delivered.stream_seq if info.delivered else 0
    if delivered <= floor:
        return
    above = 0
    async for msgs in read_messages(service.broker.connection, s.STREAM_EVENTS, info.config.filter_subjects or [],
                                    floor + 1, delivered):
        above += len(msgs)
    acked = above - (info.num_ack_pending or 0)
    if acked > 0:
        log.error("messages acked above the ack floor: the rebuilt state misses their events",
                  partition=partition, ack_floor=floor, delivered=delivered, acked_above_floor=acked)
        service.metrics.add("alert_timing.metrics.rebuild_gaps", acked, partition=str(partition))


def _connect_first(service: Service, rebuild: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    async def hook() -> None:
        await service.broker.connect()
        await rebuild()

    return hook

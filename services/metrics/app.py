"""metrics service: joins expectations and the delivery log into AST records, closes
15-minute windows by event time, publishes ``ast.record`` and ``ast.report.15m`` and writes
the window files for DS&A.

State is rebuilt, not hoped for: on start it loads the newest valid snapshot of its state
(``services.metrics.snapshot``, a JetStream Object Store) and replays its own input subjects
from the event log after the snapshot's sequence (the consumer's ack floor when it was
taken: everything at or below it applied), up to the last message its durable
consumer delivered (outputs of acked messages suppressed; the core is deterministic), then
resumes from the consumer. Snapshots are written every ``ALERT_TIMING_SNAPSHOT_INTERVAL_S``
and on drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from nats.js import JetStreamContext

from services.metrics.core import ClosedWindow, MetricsConfig, MetricsCore, Output
from services.metrics.delivery import Deliverer, DeliveryConfigError, landing_from_settings
from services.metrics.files import partition_tag, write_window
from services.metrics.rebuild import read_events, republish
from services.metrics.snapshot import Expected, SnapshotHeader, SnapshotStore, encode_snapshot
from services.runtime.envelopes import events_of
from services.runtime.service import Emitter, Inbound, Service, Unrecoverable, binding
from shared import bus
from shared import subjects as s
from shared.eventlog import read_messages
from shared.events import (
    LEGS,
    AstRecord,
    Batch,
    DeliveryAttempted,
    DeliveryExpected,
    delivered_decoder,
    encoder,
    record_id,
)
from shared.settings import ConfigError, Settings
from shared.tasks import stop_tasks
from shared.telemetry.metrics import Instrument, Metrics, setup_metrics
from shared.telemetry.tracing import TraceIndex, Tracing, setup_tracing

log = structlog.get_logger()


def metrics_config(settings: Settings) -> MetricsConfig:
    return MetricsConfig(
        allowed_lateness_ms=int(settings.allowed_lateness_s * 1000),
        handshake_timeout_ms=int(settings.handshake_timeout_s * 1000),
        idle_close_after_s=settings.idle_close_after_s,
    )


def report_id(window_start: str, revision: int, partition: int) -> str:
    return f"report:{partition}:{window_start}:{revision}"


@dataclass(frozen=True)
class Telemetry:
    """The metrics service's telemetry: its traces, its instruments, and the trace context of
    each delivery awaiting its record (only while tracing is on)."""

    tracing: Tracing
    metrics: Metrics
    traces: dict[str, str] = field(default_factory=TraceIndex)


def emit(output: Output, out: Emitter, data_dir: Path | None, partition: int = 0,
         report_subject: str = s.REPORT_15M, record_subject: str = s.RECORD,
         telemetry: Telemetry | None = None, partitions: int | None = None) -> None:
    """Everything one step of the core produced, as messages and files. ``partition`` names the
    reports (``Nats-Msg-Id``) and, with more than one partition (``partitions``; default: the
    settings), the files."""
    counted: Counter[tuple[str, str, str]] = Counter()
    for record in output.records:
        headers = None
        if telemetry is not None:
            headers = _observe(record, telemetry)
            counted[(record.status, record.region, record.category)] += 1
        out.single(record_subject, encoder.encode(record), record_id(record.delivery_id, record.revision), headers,
                   key=record.response_id)
    if telemetry is not None and counted:
        metrics = telemetry.metrics

        def count_records() -> None:  # once per batch, when JetStream has the records
            for (status, region, category), n in counted.items():
                metrics.records.add(n, status=status, region=region, category=category)

        out.when_stored.append(count_records)
    latest: dict[str, ClosedWindow] = {}
    for closed in output.closed:
        report = closed.report
        out.single(report_subject, encoder.encode(report), report_id(report.window_start, report.revision, partition))
        latest[report.window_start] = closed
    if telemetry is not None and output.closed:
        windows = telemetry.metrics
        first = sum(1 for closed in output.closed if closed.report.revision == 1)

        def count_windows() -> None:
            windows.windows_closed.add(first)
            windows.windows_revised.add(len(output.closed) - first)

        out.when_stored.append(count_windows)
    if data_dir is not None:
        # Files for the latest revision of each window this step touched: every revision is
        # on ast.report.15m, but a burst of late records rewrites a window's files once.
        tag = partition_tag(partition, partitions) if latest else None
        for closed in latest.values():
            write_window(data_dir, closed, tag)


def latest_per_window(output: Output) -> dict[str, ClosedWindow]:
    """The latest revision of each window a step closed or revised (the one its files show)."""
    return {closed.report.window_start: closed for closed in output.closed}


#: Backoff between two attempts at writing a window's files (a full or failing disk).
WRITE_RETRY_MIN_S = 0.25
WRITE_RETRY_MAX_S = 5.0


class FilesNotWritten(RuntimeError):
    """The service stopped while window files could not be written: the batch is not acked, so
    the next start replays it from the log and writes them."""


def _observe(record: AstRecord, telemetry: Telemetry) -> dict[str, str] | None:
    """The join span (child of the delivery's trace: one trace from the device alert to its
    record), the journey trace of a complete record, leg histograms (complete records, so a
    revision of an unfinished one does not count its legs twice; clock skew left out)."""
    tracing, metrics, traces = telemetry.tracing, telemetry.metrics, telemetry.traces
    complete = record.status == "complete"
    if metrics.enabled and complete:
        for leg in LEGS:
            value = getattr(record, leg)
            if value is not None and value >= 0:
                metrics.leg.record(value, leg=leg, region=record.region, category=record.category)
        handshake = record.su_handshake_ms
        if handshake is not None and handshake >= 0 and record.service_user_id is not None:
            metrics.handshake.record(handshake, service_user_id=record.service_user_id)
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
        raise ConfigError(f"ALERT_TIMING_METRICS_PARTITIONS={settings.metrics_partitions} must be at least 1")
    if settings.metrics_partition is not None:
        if not 0 <= settings.metrics_partition < settings.metrics_partitions:
            raise ConfigError(f"ALERT_TIMING_METRICS_PARTITION={settings.metrics_partition} "
                              f"is not one of the {settings.metrics_partitions} partitions "
                              f"(0..{settings.metrics_partitions - 1})")
        return [settings.metrics_partition]
    return list(range(settings.metrics_partitions))


class _Partition:
    """One partition's core and where it stands: ``applied_seq`` the highest stream sequence
    its state covers (not a contiguous mark: a message below it may still be unapplied, NAKed
    or lost on its way, and come back); ``clean`` whether every output of that state is stored
    (a batch applied but not yet published is not: a snapshot then would lose its outputs)."""

    def __init__(self, partition: int, core: MetricsCore) -> None:
        self.partition = partition
        self.core = core
        self.applied_seq = 0
        #: Everything up to here was applied at start (snapshot + replay): a redelivery of such a
        #: message (held by a predecessor that was killed) is acked and not applied again.
        self.fence = 0
        #: Set while ``clean``: a snapshot waits on it for a state whose outputs are all stored.
        self.settled = asyncio.Event()
        self.clean = True
        self.consumer_created: str | None = None
        self.filter_subjects: list[str] = []
        self.last_snapshot = time.monotonic()
        self.saving: asyncio.Task[None] | None = None
        self.wall_clock_sent = 0.0  # monotonic time a wall-clock move was published, until it comes back
        #: Windows (start -> latest revision) whose files are not written yet: applied events'
        #: outputs, held until the disk takes them (nothing is acked past them meanwhile).
        self.unwritten: dict[str, ClosedWindow] = {}

    @property
    def clean(self) -> bool:
        return self.settled.is_set()

    @clean.setter
    def clean(self, value: bool) -> None:
        if value:
            self.settled.set()
        else:
            self.settled.clear()


@dataclass(frozen=True)
class SnapshotPolicy:
    """When a partition's state is written as a snapshot: every ``interval_s`` (0: never), by
    time only. A count of events would snapshot most often in a storm, when the time is worth
    most; by time, a restart replays at most ``interval_s`` of log (docs/performance.md)."""

    interval_s: float

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0

    def due(self, part: _Partition) -> bool:
        return self.enabled and part.saving is None and time.monotonic() - part.last_snapshot >= self.interval_s


@dataclass
class InputTimes:
    """When input last arrived, in wall milliseconds, for the wall clock's moves: ``wall_ms`` our
    last input; ``log_wall_ms`` the delivery log's last message (held fresh while we are behind,
    so a backlog never reads as a stalled feed); ``caught_up`` nothing pending."""

    wall_ms: int
    log_wall_ms: int
    caught_up: bool = True

    def restart(self) -> None:
        """Quiet time counts from now (after a rebuild: a long start is not a quiet stream)."""
        self.wall_ms = self.log_wall_ms = int(time.time() * 1000)


class MetricsService:
    """The metrics service: its partitions (a core each), its snapshot policy and its background
    tasks (the wall clock, the deliverer, snapshots being written), started and cancelled with
    the service's lifecycle. ``service`` is the runtime service that runs it."""

    def __init__(self, settings: Settings, tracing: Tracing | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.data_dir = Path(settings.data_dir)
        self.config = metrics_config(settings)
        self.telemetry = Telemetry(tracing or setup_tracing(s.METRICS, settings),
                                   metrics or setup_metrics(s.METRICS, settings))
        self.telemetry.metrics.windows_closed.declare()
        self.telemetry.metrics.windows_revised.declare()
        started = int(time.time() * 1000)
        self.inputs = InputTimes(started, started)
        self.partitions = {p: _Partition(p, MetricsCore(self.config)) for p in partitions_owned(settings)}
        self.snapshot_policy = SnapshotPolicy(settings.snapshot_interval_s)
        self.snapshots: SnapshotStore | None = None
        #: The background tasks running (the wall clock, the deliverer): cancelled on shutdown.
        self.tasks: list[asyncio.Task[None]] = []
        bindings = [binding(settings, bus.metrics_durable(p), partial(self.handle, part), partial(self.done, part),
                            stateful=True) for p, part in self.partitions.items()]
        self.service = Service(s.METRICS, settings, bindings, tracing=self.telemetry.tracing,
                               metrics=self.telemetry.metrics)
        self.deliverer = (_deliverer(self.service, settings, self.data_dir, list(self.partitions),
                                     self.telemetry.metrics) if settings.delivery_url else None)
        app = self.service.app
        app.on_startup(self.start)
        app.after_startup(self.start_tasks)
        app.on_shutdown(self.stop)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect, then rebuild every partition's state before any consumer starts."""
        await self.service.broker.connect()
        await self.rebuild()

    async def start_tasks(self) -> None:
        """The background tasks, once the consumers run."""
        self.tasks.append(asyncio.create_task(self.wall_clock(), name="metrics wall clock"))
        if self.deliverer is not None:
            self.tasks.append(asyncio.create_task(self.deliverer.run(), name="metrics delivery"))

    async def stop(self) -> None:
        """On drain (after the consumers stopped): cancel the background tasks, then write the
        state of every partition whose outputs are all stored."""
        tasks, self.tasks = self.tasks, []
        await stop_tasks(tasks)
        await self.final_snapshot()

    # ------------------------------------------------------------ batches

    async def handle(self, part: _Partition, batch: list[Inbound], out: Emitter) -> None:
        now = int(time.time() * 1000)
        if part.fence:
            batch = [m for m in batch if m.stream_seq > part.fence]
        pairs = list(events_of(batch, s.METRICS, out))
        events = [event for _, event in pairs]
        self._note_inputs(part, batch, pairs, now)
        if self.telemetry.tracing.enabled:
            traces = self.telemetry.traces
            for e in events:
                if isinstance(e, DeliveryExpected) and e.trace:
                    traces[e.delivery_id] = e.trace
        part.clean = False
        output = part.core.apply(events)
        if batch:
            part.applied_seq = max(part.applied_seq, max(m.stream_seq for m in batch))
        # The core has taken these events: from here on nothing may fail without a retry,
        # or their outputs would be lost (a redelivery is a duplicate to the core).
        try:
            emit(output, out, None, part.partition, telemetry=self.telemetry)
            part.unwritten.update(latest_per_window(output))
            await self.write_files(part)
        except Exception as exc:
            raise Unrecoverable(str(exc)) from exc

    def _note_inputs(self, part: _Partition, batch: list[Inbound], pairs: list[tuple[Inbound, Any]],
                     now: int) -> None:
        """When input last arrived (our own wall-clock moves coming back are not input)."""
        wall_prefix = s.WALL_CLOCK + "."
        inputs = [m for m in batch if not m.subject.startswith(wall_prefix)]
        if inputs:
            inputs_seen = self.inputs
            inputs_seen.wall_ms = now
            # When did the delivery log last speak? Its messages' store times, not when we
            # got round to them: a backlog here is not a stalled feed.
            logged = [m.stream_time_ms for m, e in pairs if type(e) is DeliveryAttempted]
            if logged:
                inputs_seen.log_wall_ms = max(inputs_seen.log_wall_ms, max(logged))
            inputs_seen.caught_up = batch[-1].pending == 0
            if not inputs_seen.caught_up:
                inputs_seen.log_wall_ms = max(inputs_seen.log_wall_ms, now - 1000)
        if len(inputs) < len(batch):
            part.wall_clock_sent = 0.0

    async def write_files(self, part: _Partition) -> None:
        """Write the files of every window held in ``part.unwritten``, off the event loop,
        retrying a failure (disk full, I/O error) with backoff until it succeeds: the batch
        is published and acked only after that. On shutdown, give up without acking."""
        tag_of = partition_tag(part.partition, self.settings.metrics_partitions)
        delay = WRITE_RETRY_MIN_S
        while part.unwritten:
            start, closed = next(iter(part.unwritten.items()))
            try:
                await asyncio.to_thread(write_window, self.data_dir, closed, tag_of)
            except OSError as exc:
                self.telemetry.metrics.batches_retried.add(1, service=s.METRICS)
                if self.service.stopping:
                    raise FilesNotWritten(f"window {start}: {exc}") from exc
                log.warning("window files not written yet; writing them again", partition=part.partition,
                            window_start=start, held=len(part.unwritten), error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, WRITE_RETRY_MAX_S)
                continue
            if part.unwritten.get(start) is closed:
                del part.unwritten[start]

    def done(self, part: _Partition) -> None:
        """A batch's outputs are stored and its inputs acked: a point where a snapshot may be taken."""
        part.clean = True
        if self.snapshot_policy.due(part):
            self.start_snapshot(part)

    # ------------------------------------------------------------ snapshots

    def start_snapshot(self, part: _Partition) -> None:
        """Write a snapshot in the background (see ``save``)."""
        if self.snapshots is None:
            return
        part.last_snapshot = time.monotonic()
        part.saving = asyncio.create_task(self.save(self.snapshots, part))

    async def save(self, snapshots: SnapshotStore, part: _Partition) -> None:
        """The snapshot's sequence is a contiguous mark, the consumer's ack floor, read before
        the state is taken: every message at or below it was acked, so applied with its outputs
        stored, and is in any state taken after. The highest sequence applied is not: a message
        below it may be unacked (NAKed, or lost on its way) and come back after a restart; the
        replay from the mark applies it (what the state holds above the mark the core drops
        as duplicates). The state is taken between two batches, with all its outputs stored."""
        began = time.perf_counter()
        try:
            info = await snapshots.js.consumer_info(s.STREAM_EVENTS, bus.metrics_durable(part.partition))
            mark = info.ack_floor.stream_seq if info.ack_floor else 0
            while not part.clean:
                await part.settled.wait()
            header = SnapshotHeader(
                partition=part.partition, stream=s.STREAM_EVENTS, filter_subjects=part.filter_subjects,
                consumer_created=part.consumer_created, stream_seq=mark, config=self.config,
                written_ms=int(time.time() * 1000), body_sha256="", body_bytes=0)
            state, applied = part.core.export_state(), part.applied_seq
            data = await asyncio.to_thread(encode_snapshot, state, header)
            size = await snapshots.save(data, header)
            log.info("metrics snapshot written", partition=part.partition, stream_seq=header.stream_seq,
                     applied_seq=applied, bytes=size, state_bytes=len(state), pending=part.core.pending,
                     seconds=round(time.perf_counter() - began, 2))
        except Exception as exc:  # noqa: BLE001 - a snapshot is an optimisation: the next one tries again
            log.warning("metrics snapshot not written", partition=part.partition, error=str(exc))
        finally:
            part.saving = None

    async def final_snapshot(self) -> None:
        """On drain: the state of every partition whose outputs are all stored."""
        if not self.snapshot_policy.enabled or self.snapshots is None:
            return
        for part in self.partitions.values():
            if part.saving is not None:
                with contextlib.suppress(Exception):
                    await part.saving
            if part.clean and part.applied_seq:
                self.start_snapshot(part)
                if part.saving is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(part.saving, self.settings.drain_timeout_s / 2)

    # ------------------------------------------------------------ rebuild

    async def rebuild(self) -> None:
        """Load the newest valid snapshot, then replay the log after it up to the last message
        the consumer delivered (to us or to a predecessor that was killed), so what comes next
        is applied in stream order without waiting for held messages to be redelivered. A
        redelivered one is a duplicate the core ignores."""
        js = self.service.broker.connection.jetstream(timeout=self.settings.publish_ack_timeout_s)
        if self.snapshot_policy.enabled:
            self.snapshots = SnapshotStore(js)
        for part in self.partitions.values():
            await self._rebuild_partition(js, part)
        # The wall clock counts quiet time from now, not from before the rebuild: a long start
        # must not read as a quiet stream and close windows on the wall clock.
        self.inputs.restart()

    async def _load_snapshot(self, part: _Partition, delivered: int, floor: int) -> int:
        """The newest usable snapshot into ``part.core``; the sequence to replay after (0: all)."""
        if not delivered or self.snapshots is None:
            return 0
        p = part.partition
        try:
            loaded = await self.snapshots.load(Expected(
                partition=p, stream=s.STREAM_EVENTS, filter_subjects=part.filter_subjects,
                consumer_created=part.consumer_created, config=self.config, delivered_seq=delivered))
        except Exception as exc:  # noqa: BLE001 - no bucket, no permission: replay it all
            log.warning("metrics snapshots unreadable", partition=p, error=str(exc))
            loaded = None
        if loaded is None:
            log.warning("no usable metrics snapshot: replaying the whole log", partition=p, up_to_seq=delivered)
            return 0
        header, part.core = loaded
        # A contiguous mark, never above today's ack floor (a snapshot of an older version may
        # hold the highest sequence applied instead): what the state holds above it the core
        # drops as duplicates; what it lacks is applied.
        return min(header.stream_seq, floor)

    async def _rebuild_partition(self, js: JetStreamContext, part: _Partition) -> None:
        began = time.perf_counter()
        nc = self.service.broker.connection
        p = part.partition
        info = await js.consumer_info(s.STREAM_EVENTS, bus.metrics_durable(p))
        part.filter_subjects = list(info.config.filter_subjects or [])
        part.consumer_created = info.created.isoformat() if info.created else None
        delivered = info.delivered.stream_seq if info.delivered else 0
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        snapshot_seq = await self._load_snapshot(part, delivered, floor)
        loaded_s = time.perf_counter() - began
        count = 0
        # Up to the ack floor the outputs are stored (outputs before acks): replayed silently.
        async for events in read_events(nc, part.filter_subjects, snapshot_seq + 1, min(floor, delivered)):
            part.core.apply(events)
            count += len(events)
        # Above it, a predecessor may have died between applying and publishing: the outputs
        # are published again (their Nats-Msg-Ids drop the ones already stored).
        republished = 0
        async for events in read_events(nc, part.filter_subjects, max(snapshot_seq, floor) + 1, delivered):
            out = Emitter()
            emit(part.core.apply(events), out, self.data_dir, p)
            republished += await republish(js, out, self.settings.publish_ack_timeout_s, self.settings.trace_index)
            count += len(events)
        part.applied_seq = part.fence = max(delivered, snapshot_seq)
        part.clean = True
        log.info("metrics state rebuilt from the event log", partition=p, from_snapshot_seq=snapshot_seq,
                 up_to_seq=delivered, ack_floor=floor, held=info.num_ack_pending or 0, events=count,
                 republished=republished, snapshot_s=round(loaded_s, 2), seconds=round(time.perf_counter() - began, 2))
        if count >= 10_000 or (delivered and not snapshot_seq):
            self.start_snapshot(part)  # the next start need not replay all that again

    # ------------------------------------------------------------ wall clock

    async def wall_clock(self) -> None:
        """Live runs: a quiet stream (or a silent delivery log) still closes windows. The move is
        published to the log (ast.wall-clock.<p>) and applied when it comes back through the
        consumer, in log order, so a replay or a restart closes the same windows with the same
        revisions. Only moves that change an output are published. Runs until cancelled."""
        while True:
            await asyncio.sleep(1.0)
            js = self.service.js
            if js is None or self.service.stopping:
                continue
            now = int(time.time() * 1000)
            for p, part in self.partitions.items():
                if part.wall_clock_sent and time.monotonic() - part.wall_clock_sent < 10.0:
                    continue  # the last one has not come back yet
                event = part.core.wall_clock_event(now, self.inputs.wall_ms, self.inputs.log_wall_ms, p)
                if event is None or not part.core.wall_clock_due(event):
                    continue
                message = bus.Outgoing(s.wall_clock(p), encoder.encode(Batch(events=[event])), event.event_id)
                try:
                    await bus.publish_all(js, [message], self.settings.publish_ack_timeout_s)
                    part.wall_clock_sent = time.monotonic()
                except Exception as exc:  # noqa: BLE001 - decided again next second
                    log.warning("wall-clock move not published yet; retrying", partition=p, error=str(exc))


def build(settings: Settings, tracing: Tracing | None = None, metrics: Metrics | None = None) -> Service:
    """The metrics service, ready to run (``MetricsService``)."""
    return MetricsService(settings, tracing, metrics).service


def _deliverer(service: Service, settings: Settings, data_dir: Path, partitions: list[int],
               metrics: Metrics) -> Deliverer:
    """Window files to DS&A's landing zone (``ALERT_TIMING_DELIVERY_URL``), see ``delivery``."""
    try:
        landing = landing_from_settings(settings.delivery_url or "", settings.delivery_key,
                                        settings.delivery_known_hosts)
    except DeliveryConfigError as exc:
        raise ConfigError(str(exc)) from None

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

    def gauge(level: Instrument, value: float, partition: int) -> None:
        metrics.set_level(level, value, partition=str(partition))

    log.info("window files are delivered", landing=landing.name, partitions=partitions)
    return Deliverer(landing, data_dir, partitions, publish, read_delivered,
                     retry_max_s=settings.delivery_retry_max_s, horizon_days=settings.delivery_horizon_days,
                     gauge=gauge)

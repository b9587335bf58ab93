"""The thin shell every service shares: a FastStream app (lifecycle hooks, the broker
connection) whose consumers take batches of JetStream messages pushed to them (nats-py's public
push-subscription API, a deliver group per durable), hand them to a pure function, publish what
it returns with pipelined acks, and only then ack the inputs.

Acknowledgement policy (chosen, not defaulted):
- outputs are acknowledged by JetStream before the inputs are acked (at-least-once);
- a transient failure (publish not acknowledged in time, broker gone, stream leader
  moving) publishes the same outputs again, in place, until they are stored; the
  deterministic ``Nats-Msg-Id`` of every output drops the copies already stored. The batch
  is not handed back (NAK): a stateful stage (metrics) has already applied it, so a later
  redelivery would change nothing and its outputs would be lost, and a NAK would let later
  batches be acked first, leaving acked messages above the consumer's ack floor, which the
  metrics start-up rebuild (ack floor only) would never see. Only on shutdown is an
  unpublished batch handed back;
- acks are confirmed (a flush round trip after each batch's acks, resent until it
  succeeds), so batches are acked in order and none is acked only in the client's buffer;
- a poison input never raises: the pure function turns it into a RejectedInput that is
  published to ``ast.rejected.<stage>`` and the input is acked;
- a defect (the handler raises, or JetStream refuses an output for good) has the batch's
  messages handled one by one, so only the message at fault is NAKed (with a delay) and
  its batch-mates go through; after ``max_deliver`` deliveries JetStream gives up on it
  and ``services.runtime.deadletter`` copies it, whole, to ``ast.dead-letter.<stage>``.

Shutdown (SIGTERM): deliveries stop (the subscription is drained: the server sends nothing
more, what it had sent is gathered); the batch in hand and whatever was already delivered are
handled (published and acked) within ``drain_timeout_s``, so nothing is left waiting for
``ack_wait``; a batch that cannot be published any more is handed back (NAK) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
import structlog
from faststream import FastStream
from faststream.nats import NatsBroker
from faststream.nats.security import NatsSecurity, NatsUserPassword
from faststream.security import BaseSecurity
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError

from services.runtime.consumer import PushConsumer, Unrecoverable
from shared import bus
from shared import subjects as s
from shared.batching import BatchPublisher
from shared.bus import ConsumerSpec, Outgoing
from shared.events import AnyEvent, Batch, IndexEntry, RejectedInput, batch_id, encoder
from shared.roundtrip import round_trip
from shared.settings import Settings
from shared.tasks import stop_tasks
from shared.telemetry.metrics import Metrics, setup_metrics
from shared.telemetry.tracing import Tracing, setup_tracing

log = structlog.get_logger()

#: Most events in one envelope (keeps a message well under the 1 MiB default max_payload).
ENVELOPE_MAX_EVENTS = 256
RETRY_DELAY_S = 2.0
#: Longest pause between two attempts at publishing the same outputs (transient failures).
RETRY_MAX_DELAY_S = 5.0


def transient(exc: BaseException) -> bool:
    """Whether a failure to publish (or ack) will pass by itself: timeouts, a lost or
    reconnecting connection, no stream answering, a stream or its leader unavailable. A
    request JetStream answered with a 4xx error (payload too large, no such stream) will not."""
    cause = exc.__cause__ if isinstance(exc, bus.PublishError) and exc.__cause__ is not None else exc
    if isinstance(cause, APIError):
        return (cause.code or 0) >= 500
    return isinstance(cause, (TimeoutError, ConnectionError, OSError, nats.errors.Error))


@dataclass(frozen=True, slots=True)
class Inbound:
    """One JetStream message as the pure cores see it."""

    subject: str
    data: bytes
    headers: dict[str, str]
    stream_seq: int
    stream_time_ms: int
    pending: int = 0  # messages left in the consumer after this one (0: caught up)


def inbound(msg: Msg) -> Inbound:
    meta = msg.metadata
    ts = meta.timestamp
    return Inbound(
        subject=msg.subject,
        data=msg.data,
        headers=dict(msg.headers or {}),
        stream_seq=meta.sequence.stream,
        stream_time_ms=int(ts.timestamp() * 1000),
        pending=meta.num_pending,
    )


#: Outputs that make a trace index entry for the alerts they mention: the input's fact (the
#: captured envelope, written with the input's position), the record, and rejections. Any other
#: output is listed only in an entry the batch writes anyway; trace finds the rest by sequence.
INDEXED_SUBJECTS = (s.CAPTURED, s.RECORD)


def indexed_output(subject: str) -> bool:
    return subject in INDEXED_SUBJECTS or subject.startswith(s.REJECTED + ".")


class Emitter:
    """Collects what a batch produces: envelopes per subject, single contract messages, and
    which alerts (response ids) each of them mentions, for the trace index."""

    def __init__(self) -> None:
        self.envelopes: dict[str, list[AnyEvent]] = {}
        self.singles: list[Outgoing] = []
        self.single_keys: list[str | None] = []
        #: response id -> (stream, sequence) of inputs that mention it (see ``locate``)
        self.located: dict[str, set[tuple[str, int]]] = {}
        #: (response id, stream, sequence) known positions, listed only in an entry written anyway
        self.noted: list[tuple[str, str, int]] = []
        #: per message of the last ``messages()``: the response ids it mentions, and whether it
        #: makes an index entry for them (``indexed_output``)
        self.keys: list[set[str]] = []
        self.indexed: list[bool] = []
        #: Run once JetStream has stored the batch's outputs (e.g. counting what was published).
        self.when_stored: list[Callable[[], None]] = []

    def event(self, subject: str, event: AnyEvent) -> None:
        self.envelopes.setdefault(subject, []).append(event)

    def single(self, subject: str, payload: bytes, msg_id: str, headers: dict[str, str] | None = None,
               key: str | None = None) -> None:
        self.singles.append(Outgoing(subject, payload, msg_id, headers))
        self.single_keys.append(key)

    def rejected(self, event: RejectedInput, key: str | None = None) -> None:
        self.single(s.rejected(event.stage), encoder.encode(event), event.event_id, key=key)

    def locate(self, key: str, stream: str, seq: int) -> None:
        """Index an input message under an alert (an entry is written for it)."""
        self.located.setdefault(key, set()).add((stream, seq))

    def note(self, key: str, stream: str, seq: int) -> None:
        """A message known to be about an alert (an input, a position an event carries): listed
        in the alert's entry if the batch writes one (a record, a rejection), else nothing."""
        self.noted.append((key, stream, seq))

    def messages(self) -> list[Outgoing]:
        out: list[Outgoing] = []
        keys: list[set[str]] = []
        for subject, events in self.envelopes.items():
            for i in range(0, len(events), ENVELOPE_MAX_EVENTS):
                chunk = events[i : i + ENVELOPE_MAX_EVENTS]
                out.append(Outgoing(subject, encoder.encode(Batch(events=chunk)), batch_id(chunk)))
                keys.append({k for e in chunk if isinstance(k := getattr(e, "response_id", None), str)})
        out.extend(self.singles)
        keys.extend({k} if k else set() for k in self.single_keys)
        self.keys = keys
        self.indexed = [indexed_output(o.subject) for o in out]
        return out

    def index(self, stage: str, stored: Sequence[tuple[str, int]]) -> list[Outgoing]:
        """The trace index entries of this batch: one per alert it located an input of or
        wrote an indexed output for (``indexed_output``), listing where its inputs and outputs
        are stored (``stored``: stream and sequence of each message of the last ``messages()``,
        from JetStream's acks) and the positions noted for it."""
        where: dict[str, set[tuple[str, int]]] = {k: set(v) for k, v in self.located.items()}
        listed: list[tuple[str, tuple[str, int]]] = []
        for keys, indexed, at in zip(self.keys, self.indexed, stored, strict=True):
            for k in keys:
                if indexed:
                    where.setdefault(k, set()).add(at)
                else:
                    listed.append((k, at))
        if where:
            for k, at in listed:
                if k in where:
                    where[k].add(at)
            for k, stream, seq in self.noted:
                if k in where:
                    where[k].add((stream, seq))
        return [index_message(stage, key, sorted(at)) for key, at in where.items()]


def index_message(stage: str, response_id: str, at: list[tuple[str, int]]) -> Outgoing:
    """One trace index entry (``shared.events.IndexEntry``) on ``ast.index.<key>``; its
    ``Nats-Msg-Id`` is its content, so a redelivered batch stores no second copy."""
    payload = encoder.encode(IndexEntry(stage=stage, at=at, response_id=response_id))
    digest = hashlib.blake2b(payload, digest_size=8).hexdigest()
    key = s.index_key(response_id)
    return Outgoing(f"{s.INDEX}.{key}", payload, f"idx:{key}:{digest}")


BatchHandler = Callable[[list[Inbound], Emitter], Awaitable[None] | None]


@dataclass(frozen=True)
class Binding:
    """A durable consumer (its spec is the bootstrap's: ``shared.bus.consumer_specs``) and the
    function that handles it."""

    spec: ConsumerSpec
    handle: BatchHandler
    #: Called once a batch's outputs are stored and its inputs acked (metrics: a point where
    #: its state may be snapshotted).
    done: Callable[[], None] | None = None
    #: The handler keeps state (metrics): a batch it has taken is never handled again one
    #: message at a time after a failure (it would find the events applied and make nothing),
    #: it is left unacked and the service stops to be rebuilt from the log.
    stateful: bool = False

    @property
    def stream(self) -> str:
        return self.spec.stream

    @property
    def durable(self) -> str:
        return self.spec.durable

    @property
    def subject(self) -> str:
        """The durable's filter subjects, sorted (a stable label and log field)."""
        return ",".join(sorted(self.spec.filter_subjects))


def binding(settings: Settings, durable: str, handle: BatchHandler,
            done: Callable[[], None] | None = None, stateful: bool = False) -> Binding:
    """The binding of one of the product's durables, as the bootstrap declares it."""
    return Binding(bus.consumer_spec(durable, settings.metrics_partitions), handle, done, stateful)


def broker_options(options: bus.ConnectOptions) -> dict[str, Any]:
    """``shared.bus.connect_options`` in the keywords faststream's NatsBroker takes."""
    kwargs: dict[str, Any] = {k: v for k, v in options.items() if k not in ("user", "password", "tls")}
    tls = options.get("tls")
    security: BaseSecurity | None = None
    if "user" in options:
        security = NatsUserPassword(str(options["user"]), str(options.get("password") or ""),
                                    ssl_context=tls if isinstance(tls, ssl.SSLContext) else None)
    elif isinstance(tls, ssl.SSLContext):
        security = NatsSecurity(ssl_context=tls)
    if security is not None:
        kwargs["security"] = security
    return kwargs


class Service:
    """One service process: a FastStream app (lifecycle, connection) around its consumer loops."""

    def __init__(self, name: str, settings: Settings, bindings: Sequence[Binding],
                 tracing: Tracing | None = None, metrics: Metrics | None = None) -> None:
        self.name = name
        self.settings = settings
        self.bindings = list(bindings)
        self.tracing = tracing or setup_tracing(name, settings)
        self.metrics = metrics or setup_metrics(name, settings)
        logger = logging.getLogger(f"faststream.{name}")
        self.broker = NatsBroker(**broker_options(bus.connect_options(settings, name)),
                                 logger=logger, log_level=logging.DEBUG)
        self.app = FastStream(self.broker, logger=logger)
        self.js: JetStreamContext | None = None
        self.publisher: BatchPublisher | None = None
        self.counters: dict[str, int] = {"batches": 0, "in": 0, "out": 0, "rejected": 0, "retried": 0,
                                         "dead_lettered": 0, "handed_back": 0}
        #: Set on SIGTERM: a batch that cannot be published any more is handed back, not retried.
        self.stopping = False
        from services.runtime.deadletter import DeadLetters

        self.dead_letters = DeadLetters(name, [(b.stream, b.durable) for b in self.bindings],
                                        settings.publish_ack_timeout_s, on_dead=self._dead_lettered)
        self.consumers = [PushConsumer(self, b) for b in self.bindings]
        self._consumer_of = {b.durable: c for b, c in zip(self.bindings, self.consumers, strict=True)}
        self._lag_task: asyncio.Task[None] | None = None
        for b in self.bindings:
            self.metrics.dead_letters.declare(service=name, stream=b.stream, durable=b.durable)
            self.metrics.messages_in.declare(service=name, subject=b.subject)
        self.metrics.messages_out.declare(service=name)
        self.metrics.messages_rejected.declare(service=name)
        self.app.after_startup(self._started)
        # Stopping the app stops everything _started began (each stop returns at once when
        # Service.run has already stopped it).
        self.app.on_shutdown(self.dead_letters.stop)
        self.app.on_shutdown(self._quiesce)
        #: The process's exit status: 1 once something failed that a restart must repair.
        self.exit_code = 0
        self._stop: asyncio.Event | None = None

    def fail(self, reason: str, error: BaseException | None = None) -> None:
        """Stop the service with exit status 1 (its supervisor starts it again): for a failure
        the process cannot repair while running, such as a consumer loop that ended."""
        log.error("service failed; stopping it to be started again", service=self.name, reason=reason,
                  error=None if error is None else f"{type(error).__name__}: {error}")
        self.exit_code = 1
        if self._stop is not None:
            self._stop.set()

    async def _started(self) -> None:
        self.js = self.broker.connection.jetstream(timeout=self.settings.publish_ack_timeout_s)
        self.publisher = BatchPublisher(self.broker.connection, self.js)
        await self.dead_letters.start(self.broker.connection)
        for consumer in self.consumers:
            await consumer.start(self.js)
        if self.metrics.provider is not None:
            self._lag_task = asyncio.create_task(self._watch_lag())
        log.info("service started", service=self.name, nats=self.settings.nats_url)

    def _dead_lettered(self, stream: str, durable: str) -> None:
        self.counters["dead_lettered"] += 1
        self.metrics.dead_letters.add(1, service=self.name, stream=stream, durable=durable)

    async def _publish(self, out: list[Outgoing], msgs: list[Msg], binding: Binding,
                       count: int) -> list[tuple[str, int]] | None:
        """Publish a batch's outputs until JetStream has stored them all (where: stream and
        sequence of each), or until the service stops (None). Raises on a failure that will
        not pass (a defect)."""
        assert self.publisher is not None
        # The input batch's name, the same when it is redelivered whole: its atomic batches' ids.
        key = f"{binding.durable}.{msgs[0].metadata.sequence.stream}-{msgs[-1].metadata.sequence.stream}"
        delay = 0.25
        while True:
            try:
                return await self.publisher.publish(out, self.settings.publish_ack_timeout_s, key)
            except Exception as exc:
                if not transient(exc):
                    raise
                self.counters["retried"] += count
                self.metrics.batches_retried.add(1, service=self.name)
                if self.stopping:
                    log.warning("batch not published before shutdown; handed back", service=self.name,
                                subject=binding.subject, messages=count, error=str(exc))
                    return None
                log.warning("outputs not stored yet; publishing them again", service=self.name,
                            subject=binding.subject, messages=count, error=str(exc), retry_in_s=delay)
                consumer = self._consumer_of.get(binding.durable)
                held = list(consumer.held) if consumer is not None else []
                for m in (*msgs, *held):  # keep the batch, and what waits behind it, ours meanwhile (ack_wait)
                    with contextlib.suppress(Exception):
                        await m.in_progress()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY_S)

    async def _index(self, entries: list[Outgoing]) -> None:
        """Trace index entries as plain publishes into the index stream, not awaited one by one:
        the index is derived data, so an entry lost with the connection only costs ``trace`` a
        scan, while waiting for its acks (~5 per alert) cost a quarter of the pipeline's
        throughput (docs/performance.md). The acks' flush that follows puts them on the wire
        first; ``Nats-Msg-Id`` still drops the copies a redelivered batch sends."""
        nc = self.broker.connection
        try:
            for m in entries:
                await nc.publish(m.subject, m.payload, headers={"Nats-Msg-Id": m.msg_id})
        except Exception as exc:  # noqa: BLE001 - the connection is going: trace will scan for these
            log.warning("trace index entries not sent", service=self.name, entries=len(entries), error=str(exc))

    async def _ack(self, msgs: list[Msg]) -> None:
        """Ack a handled batch and make sure the server has the acks (a PING round trip): an
        ack left in the client's buffer when the process dies, or lost with the connection,
        would leave this batch below later ones that were acked. Resent until confirmed (an
        ack is idempotent), or until the service stops (the batch is then redelivered)."""
        nc = self.broker.connection
        for m in msgs:
            with contextlib.suppress(Exception):  # not sent: the flush below fails and resends it
                await m.ack()
        delay = 0.25
        while True:
            try:
                await round_trip(nc, self.settings.publish_ack_timeout_s)  # not nc.flush: see shared.roundtrip
                return
            except Exception as exc:  # noqa: BLE001 - any failure here means: not confirmed
                if self.stopping or nc.is_closed:
                    log.warning("acks not confirmed before shutdown; the batch may be redelivered",
                                service=self.name, messages=len(msgs), error=str(exc))
                    self.counters["handed_back"] += len(msgs)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY_S)
                for m in msgs:
                    with contextlib.suppress(Exception):
                        await nc.publish(m.reply, b"")  # an empty reply is an ack

    async def _watch_lag(self) -> None:
        """Consumer lag (pending per durable) for the metrics exporter."""
        assert self.js is not None
        while True:
            for b in self.bindings:
                try:
                    info = await self.js.consumer_info(b.stream, b.durable)
                    self.metrics.set_pending(b.stream, b.durable, info.num_pending or 0)
                except Exception as exc:  # noqa: BLE001 - lag is best effort; the next poll retries
                    log.debug("consumer lag not read", durable=b.durable, error=str(exc))
            await asyncio.sleep(10.0)

    async def handle(self, binding: Binding, msgs: list[Msg]) -> None:
        """One batch: the pure function, its outputs published, then the inputs acked."""
        emitter = Emitter()
        try:
            result = binding.handle([inbound(m) for m in msgs], emitter)
            if result is not None:
                await result
            out = emitter.messages()
            stored = await self._publish(out, msgs, binding, len(msgs))
            if stored is not None and self.settings.trace_index:
                # After the outputs (their sequences are in the index), before the acks: a
                # batch redelivered in between stores the same entries (same ids, deduplicated).
                await self._index(emitter.index(self.name, stored))
            published = stored is not None
        except Exception as exc:  # a defect, not bad input (that is rejected)
            if binding.stateful or isinstance(exc, Unrecoverable):
                # Not acked, not handled again here: the service stops and is rebuilt from the log.
                self.counters["handed_back"] += len(msgs)
                cause = exc.__cause__ if isinstance(exc, Unrecoverable) and exc.__cause__ else exc
                self.fail(f"batch of {binding.durable} taken but its outputs not made", cause)
                raise exc if isinstance(exc, Unrecoverable) else Unrecoverable(str(exc)) from exc
            self.counters["retried"] += len(msgs)
            self.metrics.batches_retried.add(1, service=self.name)
            if len(msgs) > 1:
                # Find the message at fault: the others must not share its retries and, after
                # max_deliver, its dead letter. (A stateless stage just does the work again;
                # the metrics core may have applied part of the batch, which it de-duplicates.)
                log.exception("batch failed; handling its messages one by one", service=self.name,
                              subject=binding.subject, messages=len(msgs))
                for m in msgs:
                    await self.handle(binding, [m])
                return
            log.exception("message failed; it will be retried and, after max_deliver, dead-lettered",
                          service=self.name, subject=binding.subject, stream_seq=msgs[0].metadata.sequence.stream)
            with contextlib.suppress(Exception):
                await msgs[0].nak(delay=RETRY_DELAY_S * 5)
            return
        if not published:  # shutting down: hand the batch back for a replica or the next start
            self.counters["handed_back"] += len(msgs)
            for m in msgs:
                with contextlib.suppress(Exception):
                    await m.nak()
            return
        for callback in emitter.when_stored:
            callback()
        await self._ack(msgs)
        if binding.done is not None:
            binding.done()
        rejected = sum(1 for o in out if o.subject.startswith(s.REJECTED))
        self.counters["batches"] += 1
        self.counters["in"] += len(msgs)
        self.counters["out"] += len(out)
        self.counters["rejected"] += rejected
        metrics = self.metrics
        if metrics.enabled:
            metrics.messages_in.add(len(msgs), service=self.name, subject=binding.subject)
            metrics.messages_out.add(len(out), service=self.name)
            metrics.messages_rejected.add(rejected, service=self.name)

    async def _quiesce(self) -> None:
        """Stop deliveries and let every consumer loop end by itself: the batch in hand is
        published and acked, what was delivered but not started is handled too; the dead-letter
        and lag tasks end. (Also the app's shutdown hook, so stopping the app drains and leaves no
        task of the service running; a second call returns at once.)"""
        self.stopping = True
        await self.dead_letters.stop()
        lag, self._lag_task = self._lag_task, None
        if lag is not None:
            await stop_tasks([lag])
        await asyncio.gather(*(c.stop() for c in self.consumers))

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or a failure, see ``fail``); the process's exit status."""
        loop = asyncio.get_running_loop()
        stop = self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.app.start()
        await stop.wait()
        self.stopping = True
        log.info("service stopping", service=self.name, drain_timeout_s=self.settings.drain_timeout_s,
                 **self.counters)
        await self.dead_letters.stop()
        try:
            await asyncio.wait_for(self._quiesce(), self.settings.drain_timeout_s * 0.75)
        except TimeoutError:
            log.warning("batch in hand not finished in time", service=self.name)
        nc = self.broker.connection
        not_drained: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.app.stop(), self.settings.drain_timeout_s)
        except TimeoutError:
            log.warning("drain timed out; unacked messages will be redelivered", service=self.name)
        except Exception as exc:  # noqa: BLE001 - reconnecting or gone: closed undrained, not a traceback
            not_drained["drain_error"] = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), 5)
        handed_back = self.counters["handed_back"]
        log.info(f"drain: handed back {handed_back} unacked messages", service=self.name, handed_back=handed_back,
                 **not_drained)
        log.info("service stopped", service=self.name, exit_code=self.exit_code, **self.counters)
        self.tracing.shutdown()
        self.metrics.shutdown()
        return self.exit_code

"""The thin shell every service shares: a faststream app whose pull subscribers take a
batch of JetStream messages, hand them to a pure function, publish what it returns with
pipelined acks, and only then ack the inputs.

Acknowledgement policy (chosen, not defaulted):
- outputs are acknowledged by JetStream before the inputs are acked (at-least-once);
- a transient failure (publish not acknowledged in time, broker gone) NAKs the batch
  with a delay, so it comes back; the deterministic ``Nats-Msg-Id`` of every output
  drops the copies already stored;
- a poison input never raises: the pure function turns it into a RejectedInput that is
  published to ``ast.rejected.<stage>`` and the input is acked.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from faststream import FastStream
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.security import NatsSecurity, NatsUserPassword
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from shared import bus
from shared.events import AnyEvent, Batch, RejectedInput, batch_id, encoder
from shared.bus import Outgoing
from shared.settings import Settings
from shared import subjects as s
from shared.telemetry import Metrics, Tracing, setup_metrics, setup_tracing

log = structlog.get_logger()


def _patch_pull_timeout() -> None:
    """faststream 0.7's batch pull loop catches ``nats.errors.TimeoutError`` only, but nats-py's
    fetch also raises a plain ``asyncio.TimeoutError`` when a short fetch times out empty. The
    loop then dies and restarts, dropping the messages it had gathered for the batch (they come
    back only after ``ack_wait``). Catching the base class restores the intended behaviour."""
    import builtins

    from faststream.nats.subscriber.usecases import stream_pull_subscriber

    stream_pull_subscriber.TimeoutError = builtins.TimeoutError  # type: ignore[attr-defined,misc]


_patch_pull_timeout()

#: Most events in one envelope (keeps a message well under the 1 MiB default max_payload).
ENVELOPE_MAX_EVENTS = 256
RETRY_DELAY_S = 2.0


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


class Emitter:
    """Collects what a batch produces: envelopes per subject, single contract messages."""

    def __init__(self) -> None:
        self.envelopes: dict[str, list[AnyEvent]] = {}
        self.singles: list[Outgoing] = []

    def event(self, subject: str, event: AnyEvent) -> None:
        self.envelopes.setdefault(subject, []).append(event)

    def single(self, subject: str, payload: bytes, msg_id: str, headers: dict[str, str] | None = None) -> None:
        self.singles.append(Outgoing(subject, payload, msg_id, headers))

    def rejected(self, event: RejectedInput) -> None:
        self.single(s.rejected(event.stage), encoder.encode(event), event.event_id)

    def messages(self) -> list[Outgoing]:
        out: list[Outgoing] = []
        for subject, events in self.envelopes.items():
            for i in range(0, len(events), ENVELOPE_MAX_EVENTS):
                chunk = events[i : i + ENVELOPE_MAX_EVENTS]
                out.append(Outgoing(subject, encoder.encode(Batch(events=chunk)), batch_id(chunk)))
        out.extend(self.singles)
        return out


BatchHandler = Callable[[list[Inbound], Emitter], Awaitable[None] | None]


@dataclass(frozen=True)
class Binding:
    """A durable consumer (created by the bootstrap step) and the function that handles it."""

    stream: str
    durable: str
    subject: str
    handle: BatchHandler


def raw_messages(msg: Any) -> list[Msg]:
    """faststream decoder: hand the handler the nats messages themselves (no JSON guessing)."""
    return msg.raw_message


class Service:
    """One service process: a faststream app around its bindings."""

    def __init__(self, name: str, settings: Settings, bindings: Sequence[Binding],
                 tracing: Tracing | None = None, metrics: Metrics | None = None) -> None:
        self.name = name
        self.settings = settings
        self.bindings = list(bindings)
        self.tracing = tracing or setup_tracing(name)
        self.metrics = metrics or setup_metrics(name)
        kwargs: dict[str, Any] = {
            "servers": [u.strip() for u in settings.nats_url.split(",")],
            "name": name,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "logger": logging.getLogger(f"faststream.{name}"),
            "log_level": logging.DEBUG,
        }
        ssl_context = None
        if settings.nats_tls_ca:
            import ssl

            ssl_context = ssl.create_default_context(cafile=settings.nats_tls_ca)
        if settings.nats_user:
            kwargs["security"] = NatsUserPassword(settings.nats_user, settings.nats_password or "",
                                                  ssl_context=ssl_context)
        elif ssl_context is not None:
            kwargs["security"] = NatsSecurity(ssl_context=ssl_context)
        if settings.nats_creds:
            kwargs["user_credentials"] = settings.nats_creds
        self.broker = NatsBroker(**kwargs)
        self.app = FastStream(self.broker, logger=logging.getLogger(f"faststream.{name}"))
        self.js: JetStreamContext | None = None
        self.counters: dict[str, int] = {"batches": 0, "in": 0, "out": 0, "rejected": 0, "retried": 0}
        for b in bindings:
            self._subscribe(b)
        self.app.after_startup(self._started)

    async def _started(self) -> None:
        self.js = self.broker.connection.jetstream()
        if self.metrics.provider is not None:
            self._lag_task = asyncio.create_task(self._watch_lag())
        log.info("service started", service=self.name, nats=self.settings.nats_url)

    async def _watch_lag(self) -> None:
        """Consumer lag (pending per durable) for the metrics exporter."""
        assert self.js is not None
        while True:
            for b in self.bindings:
                try:
                    info = await self.js.consumer_info(b.stream, b.durable)
                    self.metrics.gauges[(b.stream, b.durable)] = info.num_pending or 0
                except Exception as exc:  # noqa: BLE001 - lag is best effort; the next poll retries
                    log.debug("consumer lag not read", durable=b.durable, error=str(exc))
            await asyncio.sleep(10.0)

    def _subscribe(self, binding: Binding) -> None:
        settings = self.settings
        context = self.broker.context

        async def handle(msgs: Any) -> None:
            message = context.get_local("message")
            emitter = Emitter()
            try:
                result = binding.handle([inbound(m) for m in msgs], emitter)
                if result is not None:
                    await result
                out = emitter.messages()
                assert self.js is not None
                await bus.publish_all(self.js, out, settings.publish_ack_timeout_s)
            except (bus.PublishError, ConnectionError, asyncio.TimeoutError) as exc:
                self.counters["retried"] += len(msgs)
                log.warning("batch will be retried", service=self.name, subject=binding.subject,
                            messages=len(msgs), error=str(exc))
                await message.nack(delay=RETRY_DELAY_S)
                self.metrics.add("alert_timing.batches.retried", 1, service=self.name)
                return
            except Exception:  # a defect, not bad input (that is rejected): retry, then dead-letter
                self.counters["retried"] += len(msgs)
                log.exception("batch failed; it will be retried and, after max_deliver, dead-lettered",
                              service=self.name, subject=binding.subject, messages=len(msgs))
                await message.nack(delay=RETRY_DELAY_S * 5)
                self.metrics.add("alert_timing.batches.retried", 1, service=self.name)
                return
            await message.ack()
            rejected = sum(1 for o in out if o.subject.startswith(s.REJECTED))
            self.counters["batches"] += 1
            self.counters["in"] += len(msgs)
            self.counters["out"] += len(out)
            self.counters["rejected"] += rejected
            metrics = self.metrics
            if metrics.counters:
                metrics.add("alert_timing.messages.in", len(msgs), service=self.name, subject=binding.subject)
                metrics.add("alert_timing.messages.out", len(out), service=self.name)
                metrics.add("alert_timing.messages.rejected", rejected, service=self.name)

        self.broker.subscriber(
            binding.subject,
            stream=JStream(binding.stream, declare=False),
            durable=binding.durable,
            pull_sub=PullSub(batch_size=settings.batch_size, timeout=settings.batch_timeout_s, batch=True),
            ack_policy=AckPolicy.MANUAL,
            decoder=raw_messages,
        )(handle)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.app.start()
        await stop.wait()
        log.info("service stopping", service=self.name, drain_timeout_s=self.settings.drain_timeout_s,
                 **self.counters)
        try:
            await asyncio.wait_for(self.app.stop(), self.settings.drain_timeout_s)
        except asyncio.TimeoutError:
            log.warning("drain timed out; unacked messages will be redelivered", service=self.name)
        self.tracing.shutdown()
        self.metrics.shutdown()

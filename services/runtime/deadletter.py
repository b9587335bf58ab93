"""Dead letters: a message JetStream gave up on is kept, whole, on ``ast.dead-letter.<stage>``.

A durable consumer redelivers a message until it is acknowledged, at most ``max_deliver``
times (``shared.bus.ConsumerSpec``). When it stops trying, the server publishes an advisory
on ``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`` carrying the stream
sequence. Every service watches the advisories of its own durables (``services.runtime.service``
starts this); for each one it reads the message back from its stream by sequence
(``$JS.API.STREAM.MSG.GET.<stream>``) and publishes it as a ``RejectedInput``: the original
bytes, headers, subject and sequence, reason ``max_deliveries``, with the
``Nats-Msg-Id`` ``dead:<stream>:<seq>``. All replicas of a service see the advisory and all
publish; JetStream keeps one copy. Each dead letter is counted
(``alert_timing.dead_letters``, ``Service.counters["dead_lettered"]``) and logged.

Advisories are plain NATS messages; the bootstrap keeps them in a stream of their own
(``AST_ADVISORIES``, ``shared.bus.stream_configs``), and each service reads its own through a
durable consumer (``shared.bus.deadletter_specs``) that its replicas share. An advisory is
acked once its dead letter is stored, so one sent while no replica was running is copied
when one starts, and one whose copy failed is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence

import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from shared import bus
from shared import subjects as s
from shared.events import RejectedInput, encoder
from shared.tasks import stop_tasks

log = structlog.get_logger()

REASON = "max_deliveries"
#: Attempts at copying one message (the broker may be restarting); then it is logged as lost.
ATTEMPTS = 5
#: Pause before an advisory whose copy failed is read again (or the advisories are re-read).
RETRY_DELAY_S = 5.0


def advisory_subject(stream: str, durable: str) -> str:
    return f"{s.ADVISORY_MAX_DELIVERIES}.{stream}.{durable}"


def dead_letter_id(stream: str, seq: int) -> str:
    return f"dead:{stream}:{seq}"


def dead_letter(stage: str, stream: str, durable: str, seq: int, deliveries: int | None,
                subject: str | None, headers: dict[str, str] | None, data: bytes | None) -> RejectedInput:
    """The event published for a message a consumer gave up on (pure)."""
    where = f"{stream}/{durable}"
    if subject is None:
        message = f"stream sequence {seq} exhausted max_deliver on {where} and is no longer in the stream"
    else:
        times = f"{deliveries} times" if deliveries else "max_deliver times"
        message = f"delivered {times} on {where} without being acknowledged"
    return RejectedInput(
        event_id=dead_letter_id(stream, seq),
        stage=stage,
        reason=REASON,
        message=message,
        subject=subject or "",
        headers={str(k): str(v) for k, v in (headers or {}).items()},
        raw=data or b"",
        source_seq=seq,
    )


class DeadLetters:
    """Watches the max-deliveries advisories of a service's durables and copies each message
    it names to ``ast.dead-letter.<stage>``."""

    def __init__(self, stage: str, durables: Sequence[tuple[str, str]], timeout: float,
                 on_dead: Callable[[str, str], None] | None = None) -> None:
        self.stage = stage
        self.durables = list(dict.fromkeys(durables))
        self.timeout = timeout
        self.on_dead = on_dead
        self.count = 0
        self._nc: Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, nc: Client) -> None:
        """Read this service's advisories from ``AST_ADVISORIES`` (everything not yet copied,
        including what was sent while no replica ran), until ``stop``."""
        self._nc = nc
        self._task = asyncio.create_task(self._consume())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await stop_tasks([task])

    async def _consume(self) -> None:
        assert self._nc is not None
        js = self._nc.jetstream(timeout=self.timeout)
        sub = None
        while True:
            try:
                if sub is None:
                    sub = await js.pull_subscribe_bind(bus.deadletter_durable(self.stage), s.STREAM_ADVISORIES)
                try:
                    msgs = await sub.fetch(16, timeout=5.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    bus.raise_if_cancelled()
                    continue
                for msg in msgs:
                    if await self._on_advisory(msg):
                        await msg.ack()
                    else:
                        await msg.nak(delay=RETRY_DELAY_S)
            except asyncio.CancelledError:
                # Unsubscribed, so the connection's drain does not wait out (drain_timeout) the
                # replies of a pull request cancelled here that nobody will take any more.
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                raise
            except Exception as exc:  # noqa: BLE001 - broker away, consumer not created yet: try again
                bus.raise_if_cancelled()
                log.warning("max-deliveries advisories not read; trying again", stage=self.stage, error=str(exc))
                await asyncio.sleep(RETRY_DELAY_S)

    async def _on_advisory(self, msg: Msg) -> bool:
        """Copy the message an advisory names; False when it could not be done now."""
        try:
            advisory = json.loads(msg.data)
            stream, durable = advisory["stream"], advisory["consumer"]
            seq = int(advisory["stream_seq"])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("unreadable max-deliveries advisory", subject=msg.subject, error=str(exc))
            return True  # nothing to copy, ever
        deliveries = advisory.get("deliveries")
        delay = 0.5
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self.copy(stream, durable, seq, deliveries)
                return True
            except Exception as exc:  # noqa: BLE001 - the broker may be away for a moment
                if attempt == ATTEMPTS:
                    log.error("dead letter not published yet; the advisory will come back", stage=self.stage,
                              stream=stream, durable=durable, stream_seq=seq, error=str(exc))
                    return False
                await asyncio.sleep(delay)
                delay *= 2
        return False

    async def copy(self, stream: str, durable: str, seq: int, deliveries: int | None = None) -> RejectedInput:
        """Read message ``seq`` of ``stream`` and publish it as a dead letter."""
        assert self._nc is not None
        js = self._nc.jetstream(timeout=self.timeout)
        try:
            raw = await js.get_msg(stream, seq)
            event = dead_letter(self.stage, stream, durable, seq, deliveries, raw.subject, raw.headers, raw.data)
        except NotFoundError:
            event = dead_letter(self.stage, stream, durable, seq, deliveries, None, None, None)
        await bus.publish_all(js, [bus.Outgoing(s.dead_letter(self.stage), encoder.encode(event), event.event_id)],
                              self.timeout)
        self.count += 1
        log.error("message dead-lettered", stage=self.stage, stream=stream, durable=durable, stream_seq=seq,
                  subject=event.subject, deliveries=deliveries)
        if self.on_dead is not None:
            self.on_dead(stream, durable)
        return event

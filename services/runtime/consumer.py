"""One durable's push subscription and the task that hands its messages to the service in
batches (``PushConsumer``), and the failure that stops a service (``Unrecoverable``)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import TYPE_CHECKING

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from shared import bus

if TYPE_CHECKING:
    from services.runtime.service import Binding, Service

__all__ = ["BATCH_MAX_BYTES", "PushConsumer", "Unrecoverable"]

log = structlog.get_logger()


class Unrecoverable(Exception):
    """Raised by a handler that has changed its state with a batch whose outputs it could not
    make: the batch must be neither acked nor handled again here (handling it again would find
    its events applied and make nothing). The service stops with a failure status; its
    successor rebuilds from the log and makes the outputs."""


#: Most bytes of input in one batch (the other bound is ``Settings.batch_size`` messages, and
#: half the durable's ``max_ack_pending``): a batch of envelopes is bounded in events this way.
BATCH_MAX_BYTES = 4 * 1024 * 1024


class PushConsumer:
    """One durable's push subscription (nats-py's ``js.subscribe`` with the durable's deliver
    group, so replicas share it): the callback only gathers messages; a task hands them to the
    service in batches of up to ``batch_size`` messages (and half the durable's
    ``max_ack_pending``, so the next batch streams in while one is handled) and
    ``BATCH_MAX_BYTES``, taken once a batch is full or ``batch_timeout_s`` after its first
    message came. Idle, it waits for a message: nothing polls.

    ``stop`` unsubscribes (the server delivers nothing more once it has the UNSUB; what it sent
    before is gathered: nats-py's ``drain``), then the task handles what it holds, published and
    acked, and ends. After a failure (``Unrecoverable``) what it holds is left unacked, for the
    service's successor."""

    def __init__(self, service: Service, binding: Binding) -> None:
        self.service = service
        self.binding = binding
        self.running = False
        self.failed = False
        self.task: asyncio.Task[None] | None = None
        self.sub: JetStreamContext.PushSubscription | None = None
        self.held: collections.deque[Msg] = collections.deque()
        self.held_bytes = 0
        self.batch_msgs = max(1, min(service.settings.batch_size, binding.spec.max_ack_pending // 2))
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()

    async def start(self, js: JetStreamContext) -> None:
        spec = self.binding.spec
        self.running = True
        self.sub = await js.subscribe(spec.filter_subjects[0], queue=spec.durable, durable=spec.durable,
                                      stream=spec.stream, config=bus.consumer_config(spec),
                                      cb=self._received, manual_ack=True)
        self.task = asyncio.create_task(self._loop(), name=f"consume {spec.durable}")
        self.task.add_done_callback(self._ended)

    async def _received(self, msg: Msg) -> None:
        self.held.append(msg)
        self.held_bytes += len(msg.data)
        self._arrived.set()
        if len(self.held) >= self.batch_msgs or self.held_bytes >= BATCH_MAX_BYTES:
            self._full.set()

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A loop that ends while the service runs is a crash, never an idle process: the
        service stops with a failure status, so its supervisor starts it again."""
        if self.service.stopping:
            return
        error = None if task.cancelled() else task.exception()
        self.service.fail(f"consumer loop of {self.binding.durable} stopped", error)

    async def stop(self) -> None:
        """Stop deliveries; return once the loop has handled everything delivered to it."""
        if self.running and self.sub is not None:
            self.running = False
            with contextlib.suppress(Exception):  # connection gone: nothing more comes anyway
                await self.sub.drain()
        self.running = False
        self._arrived.set()
        self._full.set()
        if self.task is not None:
            await asyncio.wait([self.task])  # cancelling this wait leaves the loop draining

    def _take(self) -> list[Msg]:
        msgs: list[Msg] = []
        size = 0
        held = self.held
        while held and len(msgs) < self.batch_msgs:
            n = len(held[0].data)
            if msgs and size + n > BATCH_MAX_BYTES:
                break
            msgs.append(held.popleft())
            size += n
        self.held_bytes -= size
        if len(held) < self.batch_msgs and self.held_bytes < BATCH_MAX_BYTES:
            self._full.clear()
        return msgs

    async def _loop(self) -> None:
        timeout = self.service.settings.batch_timeout_s
        while True:
            if not self.held:
                if not self.running:
                    break
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if self.running and not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), timeout)
            msgs = self._take()
            try:
                await self.service.handle(self.binding, msgs)
            except Unrecoverable:
                self.failed = True  # the service is stopping: nothing more is taken
                break
            except Exception:
                # Not acked: the batch comes back after ack_wait.
                log.exception("batch not handled", service=self.service.name, durable=self.binding.durable)
                await asyncio.sleep(1.0)
        if self.failed and self.sub is not None:
            self.running = False
            with contextlib.suppress(Exception):
                await self.sub.drain()

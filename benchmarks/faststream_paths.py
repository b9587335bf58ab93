"""What consuming costs per message on FastStream's subscribers and on the runtime's own loop,
on one real nats-server: why the services consume through ``services.runtime`` and use
FastStream for the application lifecycle and the connection only (docs/architecture.md).

Every path reads the same N messages (input-sized, on ``ast.in.csp-north`` of the bootstrapped
``AST_IN``) through a durable pull consumer of its own, created alike (explicit acks, the
product's ``max_ack_pending`` and ``ack_wait``), with a handler that does nothing, and ends when
every message is acked on the server:

- ``faststream-per-message``: ``@broker.subscriber(..., pull_sub=PullSub(batch_size))``, one
  handler call and one ack per message (FastStream's ack after the handler);
- ``faststream-batch``: ``PullSub(batch_size, timeout, batch=True)``, one handler call per
  fetched batch (FastStream acks the batch's messages);
- ``runtime``: ``services.runtime.Service`` with a ``Binding`` whose handler does nothing: its
  pull loop, the batch handed over as ``Inbound`` values, the outputs published (none), each
  message acked and the acks confirmed by one flush per batch.

Printed per path: wall µs per message and CPU µs per message of this process (the client) and
of nats-server. The paths run in turn, ``--rounds`` times, alternating, on the same server.

    python -m alert_timing_benchmarks.faststream_paths --messages 20000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import nats
import psutil
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js import api

from alert_timing.nats_server import EmbeddedNats
from services.runtime.service import Binding, Emitter, Inbound, Service
from shared import bus
from shared import subjects as s
from shared.bus import ConsumerSpec
from shared.settings import Settings

SUBJECT = s.IN_CSP_NORTH
PAYLOAD_BYTES = 300


def payload(i: int) -> bytes:
    body = b'{"responseId":"N%010d","commsHubId":123456789,"timestamp":"20230601101502.450","payload":"' % i
    return body + b"A" * (PAYLOAD_BYTES - len(body) - 2) + b'"}'


async def add_durable(js: nats.js.JetStreamContext, durable: str) -> None:
    spec = ConsumerSpec(s.STREAM_IN, durable, (SUBJECT,), s.HUB_CAPTURE)
    await js.add_consumer(s.STREAM_IN, api.ConsumerConfig(
        durable_name=durable, filter_subject=SUBJECT, ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL, max_ack_pending=spec.max_ack_pending,
        ack_wait=spec.ack_wait_s, max_deliver=spec.max_deliver))


async def all_acked(js: nats.js.JetStreamContext, durable: str, n: int) -> None:
    """Until the server has every message of the durable delivered and acked."""
    while True:
        info = await js.consumer_info(s.STREAM_IN, durable)
        if info.ack_floor.stream_seq >= n and info.num_ack_pending == 0 and info.num_pending == 0:
            return
        await asyncio.sleep(0.005)


async def faststream_path(url: str, durable: str, n: int, settings: Settings, batch: bool) -> None:
    # Logged as the services log: faststream's per-message lines at DEBUG, the logger at WARNING.
    broker = NatsBroker(url, logger=logging.getLogger("faststream.bench"), log_level=logging.DEBUG)
    done = asyncio.Event()
    seen = 0
    stream = JStream(s.STREAM_IN, declare=False)
    if batch:
        @broker.subscriber(SUBJECT, stream=stream, durable=durable,
                           pull_sub=PullSub(settings.batch_size, timeout=settings.batch_timeout_s, batch=True))
        async def handle_batch(msg: NatsMessage) -> None:  # the raw batch: nothing decoded
            nonlocal seen
            batch_of: Sequence[object] = msg.raw_message  # type: ignore[assignment]  # a batch's: a list of Msg
            seen += len(batch_of)
            if seen >= n:
                done.set()
    else:
        @broker.subscriber(SUBJECT, stream=stream, durable=durable, pull_sub=PullSub(settings.batch_size))
        async def handle_one(msg: NatsMessage) -> None:  # the raw message: nothing decoded
            nonlocal seen
            seen += 1
            if seen >= n:
                done.set()
    await broker.start()
    try:
        await done.wait()
        await all_acked(broker.connection.jetstream(), durable, n)
    finally:
        await broker.stop()


async def runtime_path(url: str, durable: str, n: int, settings: Settings) -> None:
    done = asyncio.Event()
    seen = 0

    def handle(batch: list[Inbound], emitter: Emitter) -> None:
        nonlocal seen
        seen += len(batch)
        if seen >= n:
            done.set()

    spec = ConsumerSpec(s.STREAM_IN, durable, (SUBJECT,), s.HUB_CAPTURE)
    service = Service(s.HUB_CAPTURE, settings, [Binding(spec, handle)])
    await service.app.start()
    try:
        await done.wait()
        await all_acked(service.broker.connection.jetstream(), durable, n)
    finally:
        await service.app.stop()


PATHS: dict[str, Callable[[str, str, int, Settings], Awaitable[None]]] = {
    "faststream-per-message": lambda url, d, n, st: faststream_path(url, d, n, st, batch=False),
    "faststream-batch": lambda url, d, n, st: faststream_path(url, d, n, st, batch=True),
    "runtime": runtime_path,
}


async def measure(url: str, server: psutil.Process, n: int, rounds: int) -> list[dict[str, object]]:
    settings = Settings(nats_url=url)
    logging.getLogger("faststream").setLevel(logging.WARNING)  # as shared.telemetry sets it
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=30)
    await bus.bootstrap(js, settings)
    for start in range(0, n, 1000):
        futures = [await js.publish_async(SUBJECT, payload(i)) for i in range(start, min(n, start + 1000))]
        await asyncio.gather(*futures)
    results: list[dict[str, object]] = []
    for r in range(rounds):
        for name, path in PATHS.items():
            durable = f"bench-{name}-{r}"
            await add_durable(js, durable)
            cpu0, server0, t0 = time.process_time(), sum(server.cpu_times()[:2]), time.perf_counter()
            await path(url, durable, n, settings)
            wall = time.perf_counter() - t0
            cpu, server_cpu = time.process_time() - cpu0, sum(server.cpu_times()[:2]) - server0
            results.append({"path": name, "round": r + 1, "messages": n,
                            "wall_us_per_msg": round(wall / n * 1e6, 1),
                            "client_cpu_us_per_msg": round(cpu / n * 1e6, 1),
                            "server_cpu_us_per_msg": round(server_cpu / n * 1e6, 1)})
            print(json.dumps(results[-1]), flush=True)
    await nc.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m alert_timing_benchmarks.faststream_paths",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per path and round")
    parser.add_argument("--rounds", type=int, default=2, help="times each path runs, alternating")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedNats(Path(tmp) / "store") as server:
        assert server.process is not None
        asyncio.run(measure(server.url, psutil.Process(server.process.pid), args.messages, args.rounds))


if __name__ == "__main__":
    main()

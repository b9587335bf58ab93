"""The yardsticks `alert-timing bench` sets the pipeline against, each on the same nats-server.

- The **bare relay** (``limit``): one plain nats-py process per hop, pulling with ``fetch``
  and publishing each message with ``publish_async``, over as many JetStream hops as the
  pipeline has. It counts distinct alerts, not messages: a redelivered message relayed twice
  is one alert.
- The **contract floor** (``floor``): only the messages the contract stores per alert, as
  single JetStream messages — the input (``ast.in.*``), the delivery notice
  (``ast.deliver``), the delivery-log line (``ast.in.dsp-delivery``) and the record
  (``ast.record``), on the bench's own subjects (``floor.`` before each) and streams — through
  the fastest public nats-py paths: push consumer callbacks (one ``AckPolicy.ALL`` ack per
  batch) and batched publishing (plain publishes of a batch, then one publish whose ack is
  awaited: the server stores one connection's messages in order, so that ack follows the
  batch's).

Each hop is a process of its own (``python -m alert_timing_benchmarks.relays ...``): it says
``ready`` once subscribed, and at the end one JSON line with its CPU seconds and the distinct
alerts it passed on.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

import nats
from nats.aio.msg import Msg
from nats.js import api

RELAY_HOPS = 4  # in -> captured -> enriched -> expected -> record, as the pipeline hops
RELAY_STREAM = "BENCH"

#: The floor's streams and subjects: the contract's per-message subjects under ``floor.``,
#: stored as the product stores them (inputs and log lines in one stream, deliveries in
#: another, records in a third).
FLOOR_PREFIX = "floor."
FLOOR_INPUT = "floor.ast.in.csp-north"
FLOOR_DELIVER = "floor.ast.deliver"
FLOOR_LOG = "floor.ast.in.dsp-delivery"
FLOOR_RECORD = "floor.ast.record"
FLOOR_STREAMS = {"FLOOR_IN": ["floor.ast.in.>"], "FLOOR_EVENTS": [FLOOR_DELIVER], "FLOOR_OUT": [FLOOR_RECORD]}
#: (stream, consumed subject, published subject, durable): what each floor hop plays —
#: dsp-mapping (input -> delivery), the Service User (delivery -> log line), metrics
#: (log line -> record).
FLOOR_HOPS = (("FLOOR_IN", FLOOR_INPUT, FLOOR_DELIVER, "floor-map"),
              ("FLOOR_EVENTS", FLOOR_DELIVER, FLOOR_LOG, "floor-su"),
              ("FLOOR_IN", FLOOR_LOG, FLOOR_RECORD, "floor-record"))
#: Messages published (and acked with one awaited ack) in one go, and handled from one push batch.
FLOOR_BATCH = 1000
MAX_ACK_PENDING = 20_000


def payload(i: int, size: int = 200) -> bytes:
    """An input-sized JSON message whose alert key is ``N`` and ten digits of ``i``."""
    return (b'{"responseId":"N' + b"%010d" % i + b'","commsHubId":123456789,"payload":"' + b"A" * size
            + b'","timestamp":"20230601101502.450"}')


def alert_key(data: bytes) -> bytes:
    """The alert a relayed message stands for: the first JSON string value (``responseId``)."""
    return data.split(b'"', 4)[3]


class Distinct:
    """Counts distinct alerts among messages, redeliveries and copies counted once."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    def add(self, messages: Iterable[bytes]) -> int:
        self.seen.update(alert_key(m) for m in messages)
        return len(self.seen)

    def __len__(self) -> int:
        return len(self.seen)


def rate(alerts: int, seconds: float) -> float:
    return alerts / seconds if seconds > 0 else 0.0


def cpu_us_per_alert(cpu_seconds: Iterable[float], alerts: int) -> float:
    """CPU seconds of processes, summed, per alert, in µs."""
    return round(sum(cpu_seconds) / alerts * 1e6, 1) if alerts else 0.0


def _ready() -> float:
    """Say ``ready``; the CPU seconds so far (start-up, not counted)."""
    print("ready", flush=True)
    return time.process_time()


def _done(distinct: int, cpu_at_ready: float) -> None:
    print(json.dumps({"cpu_s": time.process_time() - cpu_at_ready, "distinct": distinct}), flush=True)


# --------------------------------------------------------------------------- hop processes


async def relay_hop(url: str, hop: int, n: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe(f"bench.h{hop}", durable=f"relay{hop}", stream=RELAY_STREAM,
                                  config=api.ConsumerConfig(max_ack_pending=MAX_ACK_PENDING))
    cpu0 = _ready()
    done = Distinct()
    while len(done) < n:
        try:
            msgs = await sub.fetch(512, timeout=1)
        except Exception:  # noqa: BLE001 - an empty fetch: pull again
            continue
        futs = [await js.publish_async(f"bench.h{hop + 1}", m.data) for m in msgs]
        await asyncio.gather(*futs)
        for m in msgs:
            await m.ack()
        done.add(m.data for m in msgs)
    _done(len(done), cpu0)
    await nc.close()


def floor_output(data: bytes, dst: str) -> bytes:
    """What a floor hop publishes for one message: the same alert key, about the size of the
    product's message on that subject."""
    size = {FLOOR_DELIVER: 120, FLOOR_LOG: 150, FLOOR_RECORD: 600}.get(dst, 200)
    return b'{"responseId":"' + alert_key(data) + b'","x":"' + b"B" * size + b'"}'


async def publish_batch(nc: nats.NATS, subject: str, datas: list[bytes], timeout: float = 30.0) -> None:
    """Plain publishes, then one publish whose ack is awaited: stored in order after them."""
    js = nc.jetstream(timeout=timeout)
    for data in datas[:-1]:
        await nc.publish(subject, data)
    if datas:
        await js.publish(subject, datas[-1])


async def floor_hop(url: str, stream: str, src: str, dst: str, durable: str, n: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=30)
    queue: list = []
    wake = asyncio.Event()

    async def arrived(msg: Msg) -> None:
        queue.append(msg)
        wake.set()

    await js.subscribe(src, durable=durable, stream=stream, cb=arrived, manual_ack=True,
                       config=api.ConsumerConfig(ack_policy=api.AckPolicy.ALL, max_ack_pending=MAX_ACK_PENDING))
    cpu0 = _ready()
    done = Distinct()
    while len(done) < n:
        await wake.wait()
        wake.clear()
        while queue:
            batch = queue[:FLOOR_BATCH]
            del queue[:FLOOR_BATCH]
            await publish_batch(nc, dst, [floor_output(m.data, dst) for m in batch])
            await batch[-1].ack()  # AckPolicy.ALL: every message before it too
            done.add(m.data for m in batch)
    _done(len(done), cpu0)
    await nc.close()


# --------------------------------------------------------------------------- the runs


@dataclass
class Yardstick:
    alerts_per_s: float
    cpu_us_per_alert: float  # the hop processes', summed


def _start(args: list[str]) -> subprocess.Popen:
    # Started, then only read: the hops run while this process plays source and sink.
    return subprocess.Popen([sys.executable, "-m", "alert_timing_benchmarks.relays", *args],
                            stdout=subprocess.PIPE, text=True)


def _wait_ready(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        line = p.stdout.readline() if p.stdout else ""
        if line.strip() != "ready":
            raise RuntimeError(f"a bench hop did not start (exit {p.poll()})")


def _finish(procs: list[subprocess.Popen], n: int) -> list[float]:
    cpu = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        last = json.loads(out.strip().splitlines()[-1])
        if last["distinct"] < n:
            raise RuntimeError(f"a bench hop passed on {last['distinct']} of {n} alerts")
        cpu.append(float(last["cpu_s"]))
    return cpu


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def deadline_s(n: int) -> float:
    """How long a yardstick run may take before it is called failed: 50 alerts/s at worst."""
    return max(120.0, n / 50)


async def limit(url: str, n: int) -> Yardstick:
    """The bare per-message relay over ``RELAY_HOPS`` JetStream hops, plain nats-py."""
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=30)
    await js.add_stream(api.StreamConfig(name=RELAY_STREAM, subjects=["bench.>"], storage=api.StorageType.FILE))
    procs: list[subprocess.Popen] = []
    try:
        for hop in range(RELAY_HOPS):
            await js.add_consumer(RELAY_STREAM, api.ConsumerConfig(
                durable_name=f"relay{hop}", filter_subject=f"bench.h{hop}", ack_policy=api.AckPolicy.EXPLICIT,
                max_ack_pending=MAX_ACK_PENDING))
        procs = [_start(["relay", url, str(hop), str(n)]) for hop in range(RELAY_HOPS)]
        await asyncio.to_thread(_wait_ready, procs)
        last = await js.pull_subscribe(f"bench.h{RELAY_HOPS}", stream=RELAY_STREAM, config=api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE, filter_subject=f"bench.h{RELAY_HOPS}", mem_storage=True))
        started = time.perf_counter()

        async def produce() -> None:
            for i in range(0, n, 1000):
                futs = [await js.publish_async("bench.h0", payload(k)) for k in range(i, min(i + 1000, n))]
                await asyncio.gather(*futs)

        producer = asyncio.create_task(produce())
        got = Distinct()
        give_up = started + deadline_s(n)
        while len(got) < n:
            if time.perf_counter() > give_up:
                raise RuntimeError(f"the bare relay passed on {len(got)} of {n} alerts in {deadline_s(n):.0f} s")
            try:
                got.add(m.data for m in await last.fetch(1000, timeout=2))
            except (TimeoutError, nats.errors.TimeoutError):
                if any(p.poll() not in (None, 0) for p in procs):
                    raise RuntimeError("a relay failed") from None
        elapsed = time.perf_counter() - started
        await producer
        cpu = await asyncio.to_thread(_finish, procs, n)
        return Yardstick(rate(n, elapsed), cpu_us_per_alert(cpu, n))
    finally:
        _stop(procs)
        await js.delete_stream(RELAY_STREAM)
        await nc.close()


async def floor(url: str, n: int) -> Yardstick:
    """The contract floor: input, delivery notice, log line and record, each a JetStream
    message, through push consumers and batched publishing."""
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=30)
    for name, subjects in FLOOR_STREAMS.items():
        await js.add_stream(api.StreamConfig(name=name, subjects=subjects, storage=api.StorageType.FILE))
    procs: list[subprocess.Popen] = []
    try:
        procs = [_start(["floor", url, stream, src, dst, durable, str(n)]) for stream, src, dst, durable in FLOOR_HOPS]
        await asyncio.to_thread(_wait_ready, procs)
        got = Distinct()
        all_in = asyncio.Event()

        async def record(msg: Msg) -> None:
            if got.add([msg.data]) >= n:
                all_in.set()

        sink = await js.subscribe(FLOOR_RECORD, stream="FLOOR_OUT", cb=record, ordered_consumer=True)
        started = time.perf_counter()
        for i in range(0, n, FLOOR_BATCH):
            await publish_batch(nc, FLOOR_INPUT, [payload(k) for k in range(i, min(i + FLOOR_BATCH, n))])
        try:
            await asyncio.wait_for(all_in.wait(), deadline_s(n))
        except TimeoutError:
            raise RuntimeError(f"the floor relay passed on {len(got)} of {n} alerts in {deadline_s(n):.0f} s") from None
        elapsed = time.perf_counter() - started
        await sink.unsubscribe()
        cpu = await asyncio.to_thread(_finish, procs, n)
        return Yardstick(rate(n, elapsed), cpu_us_per_alert(cpu, n))
    finally:
        _stop(procs)
        for name in FLOOR_STREAMS:
            await js.delete_stream(name)
        await nc.close()


def main(argv: list[str]) -> None:
    if argv[0] == "relay":
        asyncio.run(relay_hop(argv[1], int(argv[2]), int(argv[3])))
    elif argv[0] == "floor":
        asyncio.run(floor_hop(argv[1], argv[2], argv[3], argv[4], argv[5], int(argv[6])))
    else:
        raise SystemExit(f"unknown hop kind {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

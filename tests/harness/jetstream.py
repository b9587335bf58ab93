"""Reading and writing a real JetStream from tests: publish an input, collect what the
services appended, decode it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from shared import bus


async def send(js: JetStreamContext, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
    await js.publish(subject, data, headers=headers)


async def collect(js: JetStreamContext, stream: str, subjects: list[str], until: Callable[[list[Msg]], bool],
                  timeout: float = 30.0, start_seq: int = 1) -> list[Msg]:
    """Messages of ``stream`` matching ``subjects`` (from the start) until ``until(messages)``."""
    sub = await js.pull_subscribe("", stream=stream, config=api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start_seq, filter_subjects=subjects, inactive_threshold=30.0, mem_storage=True))
    got: list[Msg] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while loop.time() < deadline:
            try:
                got.extend(await sub.fetch(500, timeout=0.3))
            except (TimeoutError, nats.errors.TimeoutError):
                pass
            if until(got):
                return got
        return got
    finally:
        await sub.unsubscribe()


def decoded(msgs: list[Msg]) -> list[dict]:
    return [msgspec.json.decode(m.data) for m in msgs]


async def settled(js: JetStreamContext, stream: str, durable: str, timeout: float = 30.0) -> None:
    """Until one consumer has had everything delivered and acked: what its reader does before
    it acks (a count, a copy) is done."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        info = await js.consumer_info(stream, durable)
        if not info.num_pending and not info.num_ack_pending:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{durable} still busy after {timeout} s: "
                                 f"{info.num_pending} pending, {info.num_ack_pending} ack pending")
        await asyncio.sleep(0.05)


async def drained(js: JetStreamContext, partitions: int = 1, timeout: float = 30.0) -> None:
    """Until every durable consumer of the product has had everything delivered and acked: the
    pipeline has taken in all that was sent. Read in pipeline order: a service stores its outputs
    before it acks its input, so what an idle stage produced is already pending further on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    busy: dict[str, tuple[int, int]] = {}
    while loop.time() < deadline:
        busy = {}
        for spec in bus.consumer_specs(partitions):
            info = await js.consumer_info(spec.stream, spec.durable)
            if info.num_pending or info.num_ack_pending:
                busy[spec.durable] = (info.num_pending or 0, info.num_ack_pending or 0)
        if not busy:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"consumers still busy after {timeout} s (pending, ack pending): {busy}")

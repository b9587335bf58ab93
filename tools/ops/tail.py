"""tail: follow live events, or the history first and then live."""

from __future__ import annotations

import argparse
import asyncio
import heapq
from collections import deque
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from alert_timing.ops.common import (
    PROG,
    Done,
    OpsError,
    Printer,
    close,
    connect,
    load_settings,
    note,
    now_ms,
    stored_ms,
    stream_filters,
    unsubscribe,
    valid_pattern,
)
from shared import bus
from shared import subjects as s
from shared.eventlog import scan_messages

# --------------------------------------------------------------------------- tail


async def tail_command(args: argparse.Namespace) -> int:
    pattern = args.subject
    if not valid_pattern(pattern):
        raise OpsError(f"{pattern!r} is not a NATS subject pattern (tokens separated by '.', '*' or a final '>')")
    plan = stream_filters(pattern) if args.from_start else []
    if args.from_start and not plan:
        held = ", ".join(f"{name} ({' '.join(subs)})" for name, subs in s.STREAM_SUBJECTS.items())
        raise OpsError(f"no stream stores subjects matching {pattern}; the streams hold {held}")
    settings = load_settings(args)
    nc = await connect(settings, "tail", follow=True)
    printer = Printer(args.json, args.count)
    try:
        if args.from_start:
            await _tail_history(nc, plan, printer, settings.nats_url)
        else:
            await _tail_live(nc, pattern, printer, settings.nats_url)
    except* Done:
        pass
    finally:
        await close(nc)
    return 0


async def _tail_live(nc: Client, pattern: str, printer: Printer, url: str) -> None:
    sub = await nc.subscribe(pattern)
    await nc.flush()
    note(f"tailing {pattern} on {url} (Ctrl-C to stop)")
    try:
        async for msg in sub.messages:
            printer.emit(msg.subject, msg.data, now_ms())
    finally:
        await unsubscribe(sub)



async def _tail_history(nc: Client, plan: list[tuple[str, list[str]]], printer: Printer, url: str) -> None:
    from nats.js.errors import NotFoundError

    js = nc.jetstream(timeout=10)
    ends: dict[str, int] = {}
    for stream, _ in plan:
        try:
            ends[stream] = (await js.stream_info(stream)).state.last_seq
        except NotFoundError:
            note(f"{PROG} tail: stream {stream} does not exist (run `{PROG} bootstrap`); skipped")
    plan = [(stream, filters) for stream, filters in plan if stream in ends]
    if not plan:
        raise OpsError("none of the streams holding these subjects exists")
    described = "; ".join(f"{stream} {' '.join(filters)}" for stream, filters in plan)
    note(f"reading history of {described} on {url}")
    sources = [scan_messages(nc, stream, filters, 1, ends[stream]) for stream, filters in plan]
    try:
        async for msg in merge_by_time(sources):
            printer.emit(msg.subject, msg.data, stored_ms(msg))
    finally:
        for source in sources:
            await source.aclose()
    note("end of history; following live (Ctrl-C to stop)")
    async with asyncio.TaskGroup() as group:
        for stream, filters in plan:
            group.create_task(_follow(js, stream, filters, ends[stream] + 1, printer, bus.reply_prefix(nc)))


async def merge_by_time(sources: Sequence[AsyncIterator[list]]) -> AsyncIterator:
    """Messages of several streams (each in its own order) in stream-time order."""
    buffers: list[deque] = [deque() for _ in sources]
    heap: list[tuple[datetime, int, int, Any]] = []

    async def refill(i: int) -> bool:
        while not buffers[i]:
            try:
                buffers[i].extend(await anext(sources[i]))
            except StopAsyncIteration:
                return False
        return True

    def push(i: int) -> None:
        m = buffers[i].popleft()
        heapq.heappush(heap, (m.metadata.timestamp, i, m.metadata.sequence.stream, m))

    for i in range(len(sources)):
        if await refill(i):
            push(i)
    while heap:
        *_, i, _seq, msg = heapq.heappop(heap)
        yield msg
        if await refill(i):
            push(i)


async def _follow(js: JetStreamContext, stream: str, filters: list[str], start_seq: int, printer: Printer,
                  prefix: bytes = b"_INBOX.") -> None:
    """Keep reading new messages from ``start_seq``; recreate the consumer if it is lost."""
    import nats.errors
    import nats.js.errors
    from nats.js import api

    seq = start_seq
    sub = None
    try:
        while True:
            if sub is None:
                config = api.ConsumerConfig(
                    ack_policy=api.AckPolicy.NONE,
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=max(seq, 1),
                    filter_subjects=filters,
                    inactive_threshold=60.0,
                    mem_storage=True,
                )
                try:
                    sub = await js.pull_subscribe("", stream=stream, config=config, inbox_prefix=prefix)
                except (nats.errors.Error, nats.js.errors.Error, OSError):
                    await asyncio.sleep(1.0)
                    continue
            try:
                msgs = await sub.fetch(500, timeout=5.0)
            except (TimeoutError, nats.errors.TimeoutError):
                bus.raise_if_cancelled()
                continue
            except (nats.errors.Error, nats.js.errors.Error, OSError):
                bus.raise_if_cancelled()  # Ctrl-C while the connection closes comes out as an error
                await unsubscribe(sub)  # consumer gone (restart, inactivity): start again after `seq`
                sub = None
                await asyncio.sleep(1.0)
                continue
            for m in msgs:
                seq = m.metadata.sequence.stream + 1
                printer.emit(m.subject, m.data, stored_ms(m))
    finally:
        if sub is not None:
            await unsubscribe(sub)



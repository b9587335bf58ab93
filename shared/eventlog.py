"""Reading the event log: the messages of a stream between two sequences, in batches.

Used by the metrics rebuild, replay and the operations commands."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import UTC, datetime

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api


class LogReadError(Exception):
    """The server stopped or did not answer a read of the log."""


JS_API = "$JS.API"
#: Messages per pull request when scanning history, and the bytes one request may bring.
SCAN_BATCH = 5000
SCAN_MAX_BYTES = 16 * 1024 * 1024
SCAN_REPLY_TIMEOUT_S = 15.0


async def scan_messages(nc: Client, stream: str, filters: Sequence[str], first_seq: int,
                        last_seq: int, batch: int = SCAN_BATCH) -> AsyncGenerator[list[Msg], None]:
    """Messages of ``stream`` matching ``filters`` from ``first_seq`` to ``last_seq``, in batches.

    The same ephemeral pull consumer as ``services.metrics.replay.read_messages``, read with
    ``no_wait`` pull requests into a callback subscription rather than ``fetch``: fetch waits
    for each message with its own timeout task, which made a 1M-message scan about four
    times slower. Only the last message of a batch has its metadata parsed.
    """
    if last_seq < max(first_seq, 1):
        return
    js = nc.jetstream(timeout=10)
    consumer = await js.add_consumer(stream, api.ConsumerConfig(
        name=f"scan-{secrets.token_hex(8)}",  # a named create: grantable per stream, see deploy/nats
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(first_seq, 1),
        filter_subjects=list(filters),
        inactive_threshold=30.0,
        mem_storage=True,
    ))
    next_subject = f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{consumer.name}"
    request = json.dumps({"batch": batch, "max_bytes": SCAN_MAX_BYTES, "no_wait": True}).encode()
    ahead = asyncio.ensure_future(_pull(nc, next_subject, request, batch, stream))
    try:
        while True:
            msgs, status = await ahead
            if not msgs:
                if status and status[0] not in ("404", "408"):
                    raise LogReadError(f"JetStream stopped the read of {stream}: {' '.join(status)}")
                return
            meta = msgs[-1].metadata
            if meta.sequence.stream > last_seq:
                msgs = [m for m in msgs if m.metadata.sequence.stream <= last_seq]
                if msgs:
                    yield msgs
                return
            more = meta.num_pending > 0 and meta.sequence.stream < last_seq
            if more:  # the next batch travels while the caller reads this one
                ahead = asyncio.ensure_future(_pull(nc, next_subject, request, batch, stream))
            yield msgs
            if not more:
                return
    finally:
        if not ahead.done():
            ahead.cancel()
            try:
                await ahead
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - its failure is not this read's
                pass
        try:
            await asyncio.wait_for(js.delete_consumer(stream, consumer.name), 2)
        except Exception:  # noqa: BLE001 - it goes away by itself after inactive_threshold
            pass


async def _pull(nc: Client, subject: str, request: bytes, batch: int, stream: str) -> tuple[list[Msg], tuple[str, ...]]:
    """One ``no_wait`` pull request: the messages it brought and the status that ended it, if any."""
    got: list[Msg] = []
    status: list[str] = []
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        headers = msg.headers or {}
        if not msg.data and "Status" in headers:
            status[:] = [headers.get("Status", ""), headers.get("Description", "")]
            done.set()
            return
        got.append(msg)
        if len(got) >= batch:
            done.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_msg, pending_msgs_limit=batch * 2,
                             pending_bytes_limit=SCAN_MAX_BYTES * 4)
    try:
        await nc.publish(subject, request, reply=inbox)
        try:
            await asyncio.wait_for(done.wait(), SCAN_REPLY_TIMEOUT_S)
        except TimeoutError:
            if not got:
                raise LogReadError(f"JetStream did not answer a read of {stream} within "
                               f"{SCAN_REPLY_TIMEOUT_S:.0f} s") from None
    finally:
        await _unsubscribe(sub)
    return got, tuple(s_ for s_ in status if s_)


async def read_messages(nc: Client, stream: str, filter_subjects: Sequence[str], first_seq: int,
                        last_seq: int | None = None) -> AsyncIterator[list[Msg]]:
    """Raw messages of ``stream`` matching ``filter_subjects`` from ``first_seq`` up to
    ``last_seq`` (default: the stream's last message now), in stream order."""
    info = await nc.jetstream().stream_info(stream)
    end = info.state.last_seq if last_seq is None else min(last_seq, info.state.last_seq)
    if end < max(first_seq, 1) or info.state.messages == 0:
        return
    async for msgs in scan_messages(nc, stream, filter_subjects, first_seq, end):
        yield msgs


async def sequence_at(js: JetStreamContext, stream: str, start_time_iso: str,
                      prefix: bytes = b"_INBOX.") -> int | None:
    """The first stream sequence stored at or after a time (resolved once, then replay by
    sequence: a consumer started by time cannot recover its place after a reset). ``prefix``:
    the connection's inbox (``shared.bus.reply_prefix``)."""
    moment = datetime.fromisoformat(start_time_iso.replace("Z", "+00:00"))
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.BY_START_TIME,
        opt_start_time=moment,
        inactive_threshold=10.0,
        mem_storage=True,
    )
    sub = await js.pull_subscribe("", stream=stream, config=config, inbox_prefix=prefix)
    try:
        msgs = await sub.fetch(1, timeout=1.0)
        return msgs[0].metadata.sequence.stream
    except (TimeoutError, nats.errors.TimeoutError):
        return None
    finally:
        await sub.unsubscribe()


#: Messages one batched direct get may bring (the server's own cap is higher).
DIRECT_BATCH = 1000


async def messages_on_subject(nc: Client, stream: str, subject: str, limit: int = 100_000) -> list[Msg]:
    """Every message of ``stream`` stored on ``subject``, oldest first, by batched direct gets
    (``$JS.API.DIRECT.GET``, ``next_by_subj`` with ``batch``: nats-server 2.11+). The server
    walks its per-subject index, so the cost is the messages on the subject, not the stream's
    size; no consumer is made (a read-only user may do it). Stops after ``limit`` messages."""
    got: list[Msg] = []
    seq = 1
    while len(got) < limit:
        batch, more_from = await _direct_batch(nc, stream, subject, seq, min(DIRECT_BATCH, limit - len(got)))
        got.extend(batch)
        if more_from is None:
            return got
        seq = more_from
    return got


async def _direct_batch(nc: Client, stream: str, subject: str, seq: int, batch: int) -> tuple[list[Msg], int | None]:
    """One batched direct get: the messages, and the sequence to go on from (None: no more)."""
    got, end = await _direct_request(nc, stream, {"seq": seq, "next_by_subj": subject, "batch": batch}, batch)
    if end.get("Status") == "404" or not got:
        return got, None
    pending = int(got[-1].headers.get("Nats-Num-Pending", "0") if got[-1].headers else "0")
    last = int(got[-1].headers.get("Nats-Sequence", "0") if got[-1].headers else "0")
    return got, (last + 1 if pending > 0 else None)


async def _direct_request(nc: Client, stream: str, request: dict, batch: int) -> tuple[list[Msg], dict[str, str]]:
    """One batched direct get request: the messages and the headers of the status that ended it."""
    got: list[Msg] = []
    end: dict[str, str] = {}
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        headers = msg.headers or {}
        if "Status" in headers:
            end.update(headers)
            done.set()
            return
        got.append(msg)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_msg, pending_msgs_limit=batch * 2)
    try:
        await nc.publish(f"{JS_API}.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=inbox)
        try:
            await asyncio.wait_for(done.wait(), SCAN_REPLY_TIMEOUT_S)
        except TimeoutError:
            raise LogReadError(f"JetStream did not answer a direct get on {stream} within "
                               f"{SCAN_REPLY_TIMEOUT_S:.0f} s") from None
    finally:
        await _unsubscribe(sub)
    status = end.get("Status", "")
    if status not in ("204", "404", ""):
        raise LogReadError(f"JetStream refused a direct get on {stream}: {status} {end.get('Description', '')}")
    return got, end


async def _unsubscribe(sub: Subscription) -> None:
    try:
        await asyncio.wait_for(sub.unsubscribe(), 2)
    except Exception:  # noqa: BLE001 - the connection may be gone already
        pass


def direct_place(msg: Msg) -> tuple[str, int, int]:
    """Where a message read by a direct get was stored: subject, stream sequence, store time
    (epoch ms), from the headers the server puts on it."""
    headers = msg.headers or {}
    stamp = headers.get("Nats-Time-Stamp", "")
    try:
        when = int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        when = 0
    return headers.get("Nats-Subject", ""), int(headers.get("Nats-Sequence", "0") or 0), when


async def sequence_at_time(nc: Client, stream: str, when_ms: int) -> int | None:
    """The first sequence of ``stream`` stored at or after ``when_ms`` (epoch ms), by one
    direct get with ``start_time`` (the server looks the time up in its blocks; no consumer, so
    the read-only ops user may do it). None: nothing stored since."""
    moment = datetime.fromtimestamp(when_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
    reply = await _direct_request(nc, stream, {"start_time": moment, "next_by_subj": ">", "batch": 1}, 1)
    got, _ = reply
    return direct_place(got[0])[1] if got else None


async def messages_between(nc: Client, stream: str, subject: str, first_seq: int,
                           last_seq: int | None, batch_size: int = DIRECT_BATCH) -> AsyncIterator[list[Msg]]:
    """Messages of ``stream`` on ``subject`` (wildcards allowed) from ``first_seq`` to
    ``last_seq`` (None: to the end), oldest first, by batched direct gets of ``batch_size``."""
    seq: int | None = max(first_seq, 1)
    while seq is not None and (last_seq is None or seq <= last_seq):
        batch, seq = await _direct_batch(nc, stream, subject, seq, batch_size)
        if last_seq is not None:
            within = [m for m in batch if direct_place(m)[1] <= last_seq]
            if len(within) < len(batch):
                seq = None
            batch = within
        if batch:
            yield batch

"""Our outputs published as JetStream atomic batches: one acknowledgement per batch, not per message.

A service's outputs for one input batch go to one or two streams. Each stream's share is sent as
an atomic batch (the NATS design note ADR-50; the stream has ``allow_atomic``): every message but
the last is a plain publish with ``Nats-Batch-Id`` and ``Nats-Batch-Sequence``, the last adds
``Nats-Batch-Commit`` and is a request whose answer is the one acknowledgement. The server stores
the batch whole, at consecutive sequences ending at the acknowledged one, or not at all. Measured
here: ~5 µs of client CPU a message, against ~20 µs for ``publish_async`` and its awaited ack
(docs/performance.md, "Atomic batches").

Each message keeps its ``Nats-Msg-Id``, and the batch id comes from the input batch's sequences, so
a redelivered input batch sends the same messages again. JetStream refuses a batch whole when any
of its ids is already stored (err 10201), so that is the path after a crash between publish and
ack: the stream's share is then published message by message (``bus.publish_all``), where each
duplicate is dropped and answered with the sequence stored first. Any other refusal (a stream
without ``allow_atomic``, too many batches in flight, a server that ignores the headers) takes the
same path; a stream that refuses atomic batches is not offered one again by this publisher.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence

import msgspec
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext

from shared import subjects as s
from shared.bus import Outgoing, PublishError, publish_all

log = structlog.get_logger()

#: Messages in one atomic batch (the server takes at most 1,000).
MAX_BATCH = 500
#: The server's limit on a batch id's length.
MAX_BATCH_ID = 64
#: JetStream's answer to a stream that does not take atomic batches.
ATOMIC_DISABLED = 10174


class _Error(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _BatchAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    batch: str = ""
    count: int = 0
    error: _Error | None = None


_ack_decoder = msgspec.json.Decoder(_BatchAck)


def atomic_batch_id(key: str, stream: str, part: int) -> str:
    """The id of one atomic batch: the input batch's ``key``, the stream and the part (batches of
    at most ``MAX_BATCH``); hashed when longer than the server takes."""
    text = f"{key}.{stream}.{part}"
    if len(text) <= MAX_BATCH_ID:
        return text
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def by_stream(messages: Sequence[Outgoing]) -> dict[str, list[int]]:
    """The positions of ``messages`` grouped by the stream each subject is stored in, in order."""
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(messages):
        groups.setdefault(s.stream_of(m.subject), []).append(i)
    return groups


def batch_sequences(last_seq: int, count: int) -> list[int]:
    """The sequences a committed batch of ``count`` messages was stored at (consecutive)."""
    return list(range(last_seq - count + 1, last_seq + 1))


class BatchPublisher:
    """Publishes a list of outputs, each stream's share as atomic batches (see the module)."""

    def __init__(self, nc: Client, js: JetStreamContext) -> None:
        self.nc = nc
        self.js = js
        #: Streams that refused an atomic batch as such: published message by message from then on.
        self.unbatched: set[str] = set()
        #: Batches committed, and stream shares published message by message after a refusal.
        self.counters = {"batches": 0, "fallbacks": 0}

    async def publish(self, messages: Sequence[Outgoing], timeout: float, key: str) -> list[tuple[str, int]]:
        """Publish every message; where each is stored (stream, sequence), in ``messages``' order.
        ``key`` names the input batch (the same on a redelivery). Raises ``PublishError``."""
        if len(messages) < 2:
            return await publish_all(self.js, messages, timeout)
        stored: list[tuple[str, int]] = [("", 0)] * len(messages)
        groups = by_stream(messages)
        results = await asyncio.gather(*(
            self._stream_share(stream, [messages[i] for i in positions], timeout, key)
            for stream, positions in groups.items()
        ))
        for positions, where in zip(groups.values(), results, strict=True):
            for i, w in zip(positions, where, strict=True):
                stored[i] = w
        return stored

    async def _stream_share(self, stream: str, messages: list[Outgoing], timeout: float,
                            key: str) -> list[tuple[str, int]]:
        if len(messages) < 2 or stream in self.unbatched:
            return await publish_all(self.js, messages, timeout)
        # A batch holding one id twice is refused whole: the copy is not sent, and it is
        # stored where the first is (as JetStream answers a duplicate sent on its own).
        first: dict[str, int] = {}
        unique: list[Outgoing] = []
        for m in messages:
            if m.msg_id not in first:
                first[m.msg_id] = len(unique)
                unique.append(m)
        stored: list[tuple[str, int]] = []
        for part, start in enumerate(range(0, len(unique), MAX_BATCH)):
            chunk = unique[start:start + MAX_BATCH]
            ack = await self._batch(stream, chunk, atomic_batch_id(key, stream, part), timeout)
            if ack is None:  # refused: each message on its own (duplicates answer where they are)
                self.counters["fallbacks"] += 1
                stored.extend(await publish_all(self.js, chunk, timeout))
            else:
                self.counters["batches"] += 1
                stored.extend((ack.stream, seq) for seq in batch_sequences(ack.seq, ack.count))
        return stored if len(unique) == len(messages) else [stored[first[m.msg_id]] for m in messages]

    async def _batch(self, stream: str, chunk: list[Outgoing], bid: str, timeout: float) -> _BatchAck | None:
        """One atomic batch; its acknowledgement, or None when JetStream refused it."""
        try:
            last = len(chunk) - 1
            for n, m in enumerate(chunk[:last], start=1):
                await self.nc.publish(m.subject, m.payload, headers=self._headers(m, bid, n))
            m = chunk[last]
            headers = self._headers(m, bid, last + 1)
            headers["Nats-Batch-Commit"] = "1"
            reply = await self.nc.request(m.subject, m.payload, timeout=timeout, headers=headers)
        except TimeoutError as exc:
            raise PublishError(f"atomic batch of {len(chunk)} not acknowledged within {timeout}s") from exc
        except Exception as exc:  # a lost connection, no stream for the subject (no responders)
            raise PublishError(f"atomic batch failed: {exc}") from exc
        try:
            ack = _ack_decoder.decode(reply.data)
        except msgspec.DecodeError as exc:
            raise PublishError(f"atomic batch answered with {reply.data[:200]!r}") from exc
        if ack.error is None and ack.batch == bid and ack.count == len(chunk):
            return ack
        if ack.error is None or ack.error.err_code == ATOMIC_DISABLED:
            # Stored as plain messages (a server that ignores the headers), or refused as a batch
            # by the stream: message by message from now on (each duplicate is dropped).
            log.warning("stream takes no atomic batches; publishing to it message by message",
                        stream=stream, answer=reply.data[:200].decode(errors="replace"))
            self.unbatched.add(stream)
        else:
            log.debug("atomic batch refused; publishing its messages one by one", stream=stream,
                      batch=bid, err_code=ack.error.err_code, error=ack.error.description)
        return None

    @staticmethod
    def _headers(m: Outgoing, bid: str, n: int) -> dict[str, str]:
        headers = {"Nats-Msg-Id": m.msg_id, "Nats-Batch-Id": bid, "Nats-Batch-Sequence": str(n)}
        if m.headers:
            headers.update(m.headers)
        return headers

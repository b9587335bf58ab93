"""Snapshots of the metrics state at a stream sequence, kept in a JetStream Object Store bucket.

A snapshot is one object: a small header (format, event schema and core state versions,
partition, stream, the consumer's filter subjects and creation time, the stream sequence the
state covers contiguously (the consumer's ack floor: every input at or below it is in the
state; some above it may be too), the core configuration, a SHA-256 of the body) and the body, the core state
(``MetricsCore.export_state``) compressed with zlib. Each partition keeps two objects
(``metrics-<p>.a`` / ``.b``) and writes over the older one, so a snapshot spoilt while it was
written still leaves the one before it.

Start-up loads the newest snapshot that checks out and replays only the log after its
sequence; a missing, corrupt or incompatible snapshot means a full replay (with a warning).
``encode_snapshot`` / ``decode_snapshot`` are pure; ``SnapshotStore`` does the I/O.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from dataclasses import dataclass

import msgspec
import structlog
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError, ObjectNotFoundError

from services.metrics.core import STATE_VERSION, MetricsConfig, MetricsCore, StateError, import_state
from shared import subjects as s
from shared.events import SCHEMA_VERSION

log = structlog.get_logger()

MAGIC = b"ATMS1\n"
FORMAT = "alert-timing-metrics-snapshot"
#: Object chunk size: well under the servers' max_payload (1 MiB by default).
CHUNK_BYTES = 512 * 1024
SLOTS = ("a", "b")


class SnapshotHeader(msgspec.Struct, frozen=True, kw_only=True):
    format: str = FORMAT
    schema_version: int = SCHEMA_VERSION
    state_version: int = STATE_VERSION
    partition: int
    stream: str
    filter_subjects: list[str]
    #: When the durable consumer was created: a snapshot of an older consumer is another history.
    consumer_created: str | None
    stream_seq: int
    config: MetricsConfig
    written_ms: int
    body_sha256: str
    body_bytes: int


class SnapshotInvalid(ValueError):
    """A snapshot that cannot be used (missing, corrupt, of another version or history)."""


@dataclass(frozen=True)
class Expected:
    """What a snapshot must match to be used."""

    partition: int
    stream: str
    filter_subjects: list[str]
    consumer_created: str | None
    config: MetricsConfig
    #: The consumer's last delivered stream sequence: a snapshot beyond it is not of this consumer.
    delivered_seq: int


_header_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(SnapshotHeader)


def encode_snapshot(state: bytes, header: SnapshotHeader) -> bytes:
    """The object's bytes: magic, header length, header, compressed state. ``header``'s
    checksum fields are filled in here."""
    body = zlib.compress(state, 1)
    head = _header_encoder.encode(msgspec.structs.replace(
        header, body_sha256=hashlib.sha256(body).hexdigest(), body_bytes=len(body)))
    return MAGIC + len(head).to_bytes(4, "big") + head + body


def read_header(data: bytes) -> tuple[SnapshotHeader, memoryview]:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise SnapshotInvalid("not a metrics snapshot")
    size = int.from_bytes(data[len(MAGIC):len(MAGIC) + 4], "big")
    start = len(MAGIC) + 4
    try:
        header = _header_decoder.decode(data[start:start + size])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SnapshotInvalid(f"unreadable header: {exc}") from None
    return header, memoryview(data)[start + size:]


def decode_snapshot(data: bytes, expected: Expected) -> tuple[SnapshotHeader, MetricsCore]:
    """The core a snapshot holds, or ``SnapshotInvalid`` saying why it cannot be used."""
    header, body = read_header(data)
    if header.format != FORMAT:
        raise SnapshotInvalid(f"format {header.format!r}")
    if header.schema_version != SCHEMA_VERSION or header.state_version != STATE_VERSION:
        raise SnapshotInvalid(f"written by another version (event schema {header.schema_version}, "
                              f"state {header.state_version}; this code: {SCHEMA_VERSION}, {STATE_VERSION})")
    if (header.partition, header.stream, sorted(header.filter_subjects)) != (
            expected.partition, expected.stream, sorted(expected.filter_subjects)):
        raise SnapshotInvalid("of another partition, stream or set of input subjects")
    if header.consumer_created != expected.consumer_created:
        raise SnapshotInvalid("of another consumer (it was created again since)")
    if header.config != expected.config:
        raise SnapshotInvalid("written under another metrics configuration")
    if header.stream_seq > expected.delivered_seq:
        raise SnapshotInvalid(f"at sequence {header.stream_seq}, beyond the consumer's {expected.delivered_seq}")
    if len(body) != header.body_bytes or hashlib.sha256(body).hexdigest() != header.body_sha256:
        raise SnapshotInvalid("checksum mismatch")
    try:
        core = import_state(zlib.decompress(body), expected.config)
    except (zlib.error, StateError) as exc:
        raise SnapshotInvalid(str(exc)) from None
    return header, core


def object_name(partition: int, slot: str) -> str:
    return f"metrics-{partition}.{slot}"


class SnapshotStore:
    """The snapshots bucket (created by the bootstrap step, ``shared.bus.bootstrap``)."""

    def __init__(self, js: JetStreamContext, bucket: str = s.METRICS_SNAPSHOTS) -> None:
        self.js = js
        self.bucket = bucket

    async def _slots(self, partition: int) -> list[tuple[int, str]]:
        """(sequence, slot) of the partition's snapshots, newest first (sequence from the object's
        description, checked against the header when read)."""
        obs = await self.js.object_store(self.bucket)
        found = []
        for slot in SLOTS:
            try:
                info = await obs.get_info(object_name(partition, slot))
            except (ObjectNotFoundError, NotFoundError):
                continue
            try:
                seq = int((info.description or "").split("seq=", 1)[1].split()[0])
            except (IndexError, ValueError):
                seq = -1
            found.append((seq, slot))
        return sorted(found, reverse=True)

    async def save(self, data: bytes, header: SnapshotHeader) -> int:
        """Write over the partition's older snapshot; returns the object's size."""
        obs = await self.js.object_store(self.bucket)
        slots = await self._slots(header.partition)
        taken = {slot for _, slot in slots}
        free = [slot for slot in SLOTS if slot not in taken]
        slot = free[0] if free else slots[-1][1]
        meta = api.ObjectMeta(
            description=f"seq={header.stream_seq} partition={header.partition} schema={header.schema_version}",
            options=api.ObjectMetaOptions(max_chunk_size=CHUNK_BYTES))
        await obs.put(object_name(header.partition, slot), data, meta=meta)
        return len(data)

    async def load(self, expected: Expected) -> tuple[SnapshotHeader, MetricsCore] | None:
        """The newest snapshot that checks out, or None (each one refused is logged as a warning)."""
        obs = await self.js.object_store(self.bucket)
        for _seq, slot in await self._slots(expected.partition):
            name = object_name(expected.partition, slot)
            try:
                buffer = io.BytesIO()
                await obs.get(name, writeinto=buffer)
                return decode_snapshot(buffer.getvalue(), expected)
            except SnapshotInvalid as exc:
                log.warning("metrics snapshot not used", partition=expected.partition, object=name,
                            reason=str(exc))
            except Exception as exc:  # noqa: BLE001 - unreadable (digest mismatch, chunks gone): not used
                log.warning("metrics snapshot not used", partition=expected.partition, object=name,
                            reason=f"unreadable: {type(exc).__name__}: {exc}")
        return None

"""The state codec: a metrics core's whole state as versioned msgpack bytes, and back."""

from __future__ import annotations

from typing import Any

import msgspec

from services.metrics.model import Delivery, MetricsConfig, Window
from services.metrics.records import Attempt
from shared.events import AstRecord, DeliveryExpected, RejectedInput

__all__ = [
    "STATE_VERSION",
    "CoreState",
    "DeliveryEntry",
    "StateError",
    "decode_state",
    "deliveries_from",
    "delivery_entries",
    "encode_state",
    "window_states",
    "windows_from",
]

# The whole state of a core as bytes (msgpack) and back, for snapshots. Pure functions: the
# core exported is not changed, and ``import_state(export_state(core), core.config)`` is a
# core that gives the same outputs as ``core`` for any further input. Dictionary order is
# kept; sets are written sorted. A window's record that is also its delivery's latest record
# (nearly always) is written once, as a reference.

#: Version of the state layout below; a snapshot of another version is not read (a full replay
#: rebuilds the state instead).
STATE_VERSION = 3

_Attempts = tuple[Attempt, ...]


class _PackedEntry(msgspec.Struct, array_like=True, tag=0):
    did: str
    blob: bytes


class _ExpectedEntry(msgspec.Struct, array_like=True, tag=1):
    exp: DeliveryExpected


class _RecordEntry(msgspec.Struct, array_like=True, tag=2):
    rec: AstRecord


class _DeliveryEntry(msgspec.Struct, array_like=True, tag=3):
    did: str
    exp: DeliveryExpected | None
    flags: tuple[str, ...]
    attempts: _Attempts
    record: AstRecord | None
    window: int | None
    at: int | None


class _WindowState(msgspec.Struct, array_like=True):
    start: int
    #: delivery id, and the record when it is not the delivery's own latest record
    records: list[tuple[str, AstRecord | None]]
    without_alert: list[str]
    responses: list[tuple[str | None, int]]
    rejected: list[tuple[str | None, int]]
    event_ids: list[str]
    revision: int
    #: deliveries resolved into a forgotten window, held with this one
    late: list[str]


_Num = int | float  # int, or +/- infinity


#: One delivery as written: packed expectation, expectation, record, or the full state.
DeliveryEntry = _PackedEntry | _ExpectedEntry | _RecordEntry | _DeliveryEntry


class CoreState(msgspec.Struct, array_like=True):
    version: int
    config: MetricsConfig
    deliveries: list[DeliveryEntry]
    pending: int
    fresh: list[str]
    buckets: list[tuple[int, list[str]]]
    bucket_keys: list[int]
    next_due: _Num
    windows: list[_WindowState]
    first_reported: int | None
    closed_before: int | None
    forgotten_before: _Num
    revised: list[int]
    counted: list[str]
    unplaced: list[RejectedInput]
    event_time: int | None
    alert_clock: _Num
    log_clock: _Num
    clocks_at_input: _Num
    watermark: _Num
    next_action: _Num
    next_forget: _Num
    event_time_at_input: int | None
    counters: tuple[int, int, int, int, int, int]


class _Version(msgspec.Struct, array_like=True):
    """The first field of any state: its version (the fields after it are not read)."""

    version: int


_state_encoder = msgspec.msgpack.Encoder()
_version_decoder = msgspec.msgpack.Decoder(_Version)
_state_decoder = msgspec.msgpack.Decoder(CoreState)


class StateError(ValueError):
    """Bytes that are not a core state this version can read."""


def encode_state(state: CoreState) -> bytes:
    """``state`` as msgpack bytes."""
    return _state_encoder.encode(state)


def decode_state(data: bytes, config: MetricsConfig | None = None) -> CoreState:
    """The state ``encode_state`` wrote. ``config``: the configuration the caller runs with; a
    state written under another one raises ``StateError`` (its windows, deadlines and sketches
    would not be this configuration's)."""
    try:
        match _version_decoder.decode(data).version:
            case version if version == STATE_VERSION:
                st = _state_decoder.decode(data)
            case version:
                raise StateError(f"metrics core state version {version}, this code reads {STATE_VERSION}")
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StateError(f"not a metrics core state: {exc}") from None
    if config is not None and st.config != config:
        raise StateError("metrics core state written under another configuration")
    return st


def delivery_entries(deliveries: dict[str, Any]) -> list[DeliveryEntry]:
    """The core's deliveries (each one of four kinds, see ``services.metrics.join.Join``), in order."""
    entries: list[DeliveryEntry] = []
    for did, d in deliveries.items():
        match d:
            case bytes():
                entries.append(_PackedEntry(did, d))
            case DeliveryExpected():
                entries.append(_ExpectedEntry(d))
            case AstRecord():
                entries.append(_RecordEntry(d))
            case _:
                entries.append(_DeliveryEntry(did, d.exp, d.flags, d.attempts, d.record, d.window, d.at))
    return entries


def deliveries_from(entries: list[DeliveryEntry]) -> dict[str, Any]:
    """The deliveries ``delivery_entries`` wrote, in their order."""
    deliveries: dict[str, Any] = {}
    for entry in entries:
        match entry:
            case _PackedEntry(did=did, blob=blob):
                deliveries[did] = blob
            case _ExpectedEntry(exp=exp):
                deliveries[exp.delivery_id] = exp
            case _RecordEntry(rec=rec):
                deliveries[rec.delivery_id] = rec
            case _DeliveryEntry():
                d = Delivery()
                d.exp, d.flags, d.attempts, d.record, d.window, d.at = (
                    entry.exp, entry.flags, entry.attempts, entry.record, entry.window, entry.at)
                deliveries[entry.did] = d
    return deliveries


def _own_record(held: Any) -> AstRecord | None:
    """The latest record of a delivery as the core holds it (None: none yet)."""
    return held if type(held) is AstRecord else getattr(held, "record", None)


def window_states(windows: dict[int, Window], deliveries: dict[str, Any]) -> list[_WindowState]:
    """The windows, each record written as a reference when it is its delivery's own."""
    states = []
    for w in windows.values():
        refs: list[tuple[str, AstRecord | None]] = []
        for did, rec in w.records.items():
            refs.append((did, None if _own_record(deliveries.get(did)) is rec else rec))
        states.append(_WindowState(
            start=w.start, records=refs, without_alert=sorted(w.without_alert), responses=list(w.responses.items()),
            rejected=list(w.rejected.items()), event_ids=list(w.event_ids), revision=w.revision,
            late=sorted(w.late)))
    return states


def windows_from(states: list[_WindowState], deliveries: dict[str, Any]) -> dict[int, Window]:
    """The windows ``window_states`` wrote, references resolved against ``deliveries``."""
    windows: dict[int, Window] = {}
    for ws in states:
        w = Window(ws.start)
        for did, rec in ws.records:
            if rec is None:
                rec = _own_record(deliveries.get(did))
                if rec is None:
                    raise StateError(f"window {ws.start} refers to delivery {did}, which has no record")
            w.records[did] = rec
        w.without_alert = set(ws.without_alert)
        w.responses = dict(ws.responses)
        w.rejected = dict(ws.rejected)
        w.event_ids = list(ws.event_ids)
        w.revision = ws.revision
        w.late = set(ws.late)
        windows[ws.start] = w
    return windows

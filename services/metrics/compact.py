"""Compact storage for the metrics core: pending expectations packed to bytes, shared copies of
repeated strings, and the small caches the record builder uses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from shared.events import (
    FLAG_CLOCK_SKEW,
    FLAG_MISSING_HUB_TIMESTAMP,
    AstRecord,
    DeliveryExpected,
)
from shared.timefmt import from_ms, to_ms

# ----------------------------------------------------------------------------- helpers

_MINUTE_PREFIX: dict[int, str] = {}
SECOND_PREFIX: dict[int, str] = {}
_SECONDS = tuple(f"{s:02d}." for s in range(60))
MILLIS = tuple(f"{ms:03d}Z" for ms in range(1000))


def second_prefix(second: int) -> str:
    """'YYYY-MM-DDTHH:MM:SS.' of an epoch second (cached, built from a cached minute)."""
    minute = second // 60
    prefix = _MINUTE_PREFIX.get(minute)
    if prefix is None:
        if len(_MINUTE_PREFIX) > 100_000:
            _MINUTE_PREFIX.clear()
        prefix = _MINUTE_PREFIX[minute] = from_ms(minute * 60_000).strftime("%Y-%m-%dT%H:%M:")
    if len(SECOND_PREFIX) > 400_000:
        SECOND_PREFIX.clear()
    text = SECOND_PREFIX[second] = prefix + _SECONDS[second % 60]
    return text


def fast_iso(ms: int | None) -> str | None:
    """``shared.timefmt.format_iso``, fast (second prefixes cached)."""
    if ms is None:
        return None
    return (SECOND_PREFIX.get(ms // 1000) or second_prefix(ms // 1000)) + MILLIS[ms % 1000]


def parse_iso_ms(text: str | None) -> int | None:
    if text is None:
        return None
    return to_ms(datetime.fromisoformat(text))


def window_start_of(ms: int, window_ms: int = 900_000) -> int:
    return ms - ms % window_ms


class _AlertNames(dict):  # type: ignore[type-arg]
    """alert code -> name (``shared.alert_codes``), looked up once per code."""

    def __missing__(self, code: str | None) -> str | None:
        name = None
        if code is not None:
            try:
                from shared.alert_codes import alert_name
            except ImportError:  # pragma: no cover - the table ships with the package
                return None
            name = alert_name(code)
        if len(self) < 100_000:
            self[code] = name
        return name


ALERT_NAMES = _AlertNames()


class _Flags(dict):  # type: ignore[type-arg]
    """(expectation flags, missing hub timestamp, clock skew) -> the record's sorted flags."""

    def __missing__(self, key: tuple[tuple[str, ...], bool, bool]) -> tuple[str, ...]:
        base, missing_hub, skew = key
        flags = set(base)
        if missing_hub:
            flags.add(FLAG_MISSING_HUB_TIMESTAMP)
        if skew:
            flags.add(FLAG_CLOCK_SKEW)
        got = tuple(sorted(flags))
        if len(self) < 10_000:
            self[key] = got
        return got


RECORD_FLAGS = _Flags()


_INTERNED: dict[Any, Any] = {}


def intern(value: Any) -> Any:
    got = _INTERNED.get(value)
    if got is None:
        if value is None:
            return None
        if len(_INTERNED) > 200_000:
            _INTERNED.clear()
        _INTERNED[value] = got = value
    return got


def compact(e: DeliveryExpected) -> DeliveryExpected:
    """The same expectation holding less memory: shared copies of the repeated strings, no
    event id or trace context (neither reaches the record)."""
    return msgspec.structs.replace(
        e,
        event_id="",
        trace=None,
        region=intern(e.region),
        category=intern(e.category),
        alert_code=intern(e.alert_code),
        dcc_alert_code=intern(e.dcc_alert_code),
        message_code=intern(e.message_code),
        recipient=intern(e.recipient),
        service_user_id=intern(e.service_user_id),
        flags=intern(e.flags),
    )


_pack_encoder = msgspec.msgpack.Encoder()
_pack_decoder = msgspec.msgpack.Decoder(
    tuple[str, str, int, str, str | None, str | None, str | None, str | None, str, str,
          int | None, int | None, int | None, int, int, tuple[str, ...]]
)


def pack(e: DeliveryExpected) -> bytes:
    """A pending expectation as one compact bytes object (about a third of the decoded struct
    with its strings and ints); the delivery id stays the dictionary key."""
    return _pack_encoder.encode((
        e.response_id, e.region, e.comms_hub_id, e.category, e.alert_code, e.dcc_alert_code, e.message_code,
        e.originator, e.recipient, e.service_user_id, e.device_alert_time, e.chf_received, e.csp_received,
        e.csp_sent, e.dsp_received, e.flags,
    ))


def unpack(did: str, blob: bytes) -> DeliveryExpected:
    (response_id, region, hub, category, code, dcc, message_code, originator, recipient, su, device, chf, cr,
     cs, dr, flags) = _pack_decoder.decode(blob)
    return DeliveryExpected(
        event_id="", delivery_id=did, response_id=response_id, region=intern(region), comms_hub_id=hub,
        category=intern(category), alert_code=intern(code), dcc_alert_code=intern(dcc),
        message_code=intern(message_code), originator=originator, recipient=intern(recipient),
        service_user_id=intern(su), device_alert_time=device, chf_received=chf, csp_received=cr, csp_sent=cs,
        dsp_received=dr, flags=intern(flags),
    )


def packed_dsp_received(blob: bytes) -> int:
    return _pack_decoder.decode(blob)[14]


DERIVED_FLAGS = frozenset((FLAG_MISSING_HUB_TIMESTAMP, FLAG_CLOCK_SKEW))


class _PlainFlags(dict):  # type: ignore[type-arg]
    """flags tuple -> whether it holds none of the flags a record derives itself."""

    def __missing__(self, flags: tuple[str, ...]) -> bool:
        plain = not (DERIVED_FLAGS & set(flags))
        if len(self) < 10_000:
            self[flags] = plain
        return plain


PLAIN_FLAGS = _PlainFlags()


def expected_from_record(record: AstRecord, base_flags: tuple[str, ...]) -> DeliveryExpected:
    """The expectation behind a record (kept instead of it once the record exists)."""
    return DeliveryExpected(
        event_id="",
        delivery_id=record.delivery_id,
        response_id=record.response_id,
        region=record.region,
        comms_hub_id=record.comms_hub_id,
        category=record.category,
        alert_code=record.alert_code,
        dcc_alert_code=record.dcc_alert_code,
        message_code=record.message_code,
        originator=record.originator,
        recipient=record.recipient or "",
        service_user_id=record.service_user_id or "",
        device_alert_time=parse_iso_ms(record.device_alert_time),
        chf_received=parse_iso_ms(record.chf_received),
        csp_received=parse_iso_ms(record.csp_received),
        csp_sent=parse_iso_ms(record.csp_sent),  # type: ignore[arg-type]
        dsp_received=parse_iso_ms(record.dsp_received),  # type: ignore[arg-type]
        flags=base_flags,
    )


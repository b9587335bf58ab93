"""Time formats of the interfaces, parsed strictly. Internally: UTC epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import overload

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimestampError(ValueError):
    """A timestamp that is not ``YYYYMMDDHHMMSS.SSS`` (UTC) or not a real instant."""


def parse_csp(text: object) -> int:
    """Parse ``YYYYMMDDHHMMSS.SSS`` (UTC) to epoch milliseconds, strictly."""
    if not isinstance(text, str):
        raise TimestampError(f"expected a YYYYMMDDHHMMSS.SSS string, got {type(text).__name__}")
    if len(text) != 18 or text[14] != "." or not (text[:14].isdigit() and text[15:].isdigit()):
        raise TimestampError(f"{text[:40]!r} is not YYYYMMDDHHMMSS.SSS")
    if not text.isascii():
        raise TimestampError(f"{text[:40]!r} is not YYYYMMDDHHMMSS.SSS")
    try:
        moment = datetime(
            int(text[0:4]), int(text[4:6]), int(text[6:8]),
            int(text[8:10]), int(text[10:12]), int(text[12:14]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise TimestampError(f"{text!r} is not a valid date-time: {exc}") from None
    return to_ms(moment) + int(text[15:18])


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise TimestampError("naive datetime: UTC required")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def format_csp(ms: int) -> str:
    """Epoch milliseconds to ``YYYYMMDDHHMMSS.SSS``."""
    return from_ms(ms).strftime("%Y%m%d%H%M%S") + f".{ms % 1000:03d}"


@overload
def format_iso(ms: int) -> str: ...


@overload
def format_iso(ms: None) -> None: ...


@overload
def format_iso(ms: int | None) -> str | None: ...


def format_iso(ms: int | None) -> str | None:
    """Epoch milliseconds to ISO 8601 UTC with milliseconds: ``2023-06-01T10:15:00.123Z``."""
    if ms is None:
        return None
    return from_ms(ms).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def parse_iso(text: str) -> int:
    """Parse an ISO 8601 instant (``Z`` or offset; naive means UTC) to epoch milliseconds."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TimestampError(f"{text!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_ms(moment)

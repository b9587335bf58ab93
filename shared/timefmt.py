"""Time formats of the interfaces, parsed strictly. Internally: UTC epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NoReturn, overload

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimestampError(ValueError):
    """A timestamp that is not ``YYYYMMDDHHMMSS.SSS`` (UTC) or not a real instant."""


def parse_csp(text: object) -> int:
    """Parse ``YYYYMMDDHHMMSS.SSS`` (UTC) to epoch milliseconds, strictly.

    Arithmetic on the fixed positions (no ``datetime``): one ``int`` of the 14 digits, split
    by division, the day number from the proleptic Gregorian calendar (``days_from_civil``).
    A string that is not a real instant is explained by ``datetime`` (the rare path), so the
    messages stay those of its checks."""
    if not isinstance(text, str):
        raise TimestampError(f"expected a YYYYMMDDHHMMSS.SSS string, got {type(text).__name__}")
    if (len(text) != 18 or text[14] != "." or not text.isascii()
            or not (text[:14].isdigit() and text[15:].isdigit())):
        raise TimestampError(f"{text[:40]!r} is not YYYYMMDDHHMMSS.SSS")
    stamp = int(text[:14])
    date, clock = divmod(stamp, 1_000_000)
    year, month_day = divmod(date, 10_000)
    month, day = divmod(month_day, 100)
    hour, minute_second = divmod(clock, 10_000)
    minute, second = divmod(minute_second, 100)
    if (year == 0 or not 1 <= month <= 12 or day == 0 or hour > 23 or minute > 59 or second > 59
            or (day > _MONTH_DAYS[month] and not (month == 2 and day == 29 and _leap(year)))):
        _explain(text)
    days = days_from_civil(year, month, day)
    return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + int(text[15:])


#: Days in each month of a common year (index 1..12).
_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's ``days_from_civil``:
    the year taken from March, so the leap day is the last of it)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _explain(text: str) -> NoReturn:
    """Raise for digits in place that are not a real instant, saying why as ``datetime`` does."""
    try:
        datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]),
                 int(text[8:10]), int(text[10:12]), int(text[12:14]), tzinfo=UTC)
    except ValueError as exc:
        raise TimestampError(f"{text!r} is not a valid date-time: {exc}") from None
    raise TimestampError(f"{text!r} is not a valid date-time")  # pragma: no cover - datetime took it


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

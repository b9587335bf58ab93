from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.timefmt import TimestampError, format_csp, format_iso, parse_csp, parse_iso, to_ms


def test_parse_csp_exact_instant():
    # 2023-06-01T10:15:00.123Z: 1685614500 s since the epoch (checked: 19509 days * 86400 + 36900)
    assert parse_csp("20230601101500.123") == 1_685_614_500_123


@pytest.mark.parametrize("bad", ["", "20230601101500", "20230601101500.12", "2023060110150.1234",
                                 "20231301101500.000", "20230230101500.000", "20230601246000.000",
                                 "2023-06-01T10:15", " 20230601101500.123", "２0230601101500.123", None, 20230601])
def test_parse_csp_rejects(bad):
    with pytest.raises(TimestampError):
        parse_csp(bad)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)))
def test_csp_round_trip(moment):
    ms = to_ms(moment)
    assert parse_csp(format_csp(ms)) == ms
    assert parse_iso(format_iso(ms)) == ms


def test_iso_format():
    assert format_iso(1_685_614_500_123) == "2023-06-01T10:15:00.123Z"
    assert format_iso(None) is None


# --- parse_csp's arithmetic against datetime ------------------------------------------------


def _by_datetime(text: object) -> int:
    """``parse_csp`` as it was written with ``datetime``: the reference for the arithmetic."""
    if not isinstance(text, str):
        raise TimestampError(f"expected a YYYYMMDDHHMMSS.SSS string, got {type(text).__name__}")
    if len(text) != 18 or text[14] != "." or not (text[:14].isdigit() and text[15:].isdigit()):
        raise TimestampError(f"{text[:40]!r} is not YYYYMMDDHHMMSS.SSS")
    if not text.isascii():
        raise TimestampError(f"{text[:40]!r} is not YYYYMMDDHHMMSS.SSS")
    try:
        moment = datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]),
                          int(text[8:10]), int(text[10:12]), int(text[12:14]), tzinfo=UTC)
    except ValueError as exc:
        raise TimestampError(f"{text!r} is not a valid date-time: {exc}") from None
    return to_ms(moment) + int(text[15:18])


def _same(text: object) -> None:
    try:
        expected: int | str = _by_datetime(text)
    except TimestampError as exc:
        expected = f"error: {exc}"
    try:
        got: int | str = parse_csp(text)
    except TimestampError as exc:
        got = f"error: {exc}"
    assert got == expected


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_000),
                    timezones=st.just(UTC)))
def test_parse_csp_equals_datetime_on_every_valid_instant(moment):
    m = moment
    text = f"{m.year:04d}{m.month:02d}{m.day:02d}{m.hour:02d}{m.minute:02d}{m.second:02d}.{m.microsecond // 1000:03d}"
    assert parse_csp(text) == _by_datetime(text) == to_ms(moment)


# Each field over its digits' whole range (00..99, 0000..9999): most are not real instants.
_FIELDS = st.tuples(st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
                    st.integers(0, 99), st.integers(0, 99), st.integers(0, 999))


@given(_FIELDS)
def test_parse_csp_equals_datetime_on_any_digits(fields):
    y, mo, d, h, mi, sec, ms = fields
    _same(f"{y:04d}{mo:02d}{d:02d}{h:02d}{mi:02d}{sec:02d}.{ms:03d}")


@given(st.integers(1, 9999), st.integers(1, 12), st.integers(28, 31))
def test_parse_csp_equals_datetime_at_month_ends_and_leap_days(year, month, day):
    _same(f"{year:04d}{month:02d}{day:02d}235959.999")
    _same(f"{year:04d}{month:02d}{day:02d}000000.000")


@given(st.one_of(st.text(max_size=24), st.text(alphabet="0123456789.+-: ZT٣２", min_size=16, max_size=20),
                 st.integers(), st.none(), st.binary(max_size=18)))
def test_parse_csp_equals_datetime_on_other_strings(text):
    _same(text)


@pytest.mark.parametrize("text, ms", [
    ("19700101000000.000", 0),
    ("19691231235959.999", -1),
    ("20000229120000.000", 951_825_600_000),  # leap day of a year divisible by 400
    ("20240229000000.001", 1_709_164_800_001),
    ("00010101000000.000", -62_135_596_800_000),
    ("99991231235959.999", 253_402_300_799_999),
])
def test_parse_csp_known_instants(text, ms):
    assert parse_csp(text) == ms


@pytest.mark.parametrize("text", ["19000229000000.000", "21000229000000.000", "20230229000000.000"])
def test_parse_csp_century_years_not_divisible_by_400_have_no_leap_day(text):
    with pytest.raises(TimestampError, match="day is out of range for month"):
        parse_csp(text)

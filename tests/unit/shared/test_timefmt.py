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

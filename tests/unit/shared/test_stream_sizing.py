"""The streams' limits within what JetStream can reserve (``shared.bus.fit_streams``)."""

from __future__ import annotations

from shared import bus
from shared import subjects as s
from shared.settings import Settings

GiB = 1024**3
MiB = bus.MIN_STREAM_BYTES


def wanted(total: int = 3 * 1024**4) -> dict[str, int]:
    limits = bus.stream_max_bytes(Settings(stream_max_bytes=total))
    return {**limits, s.STREAM_ADVISORIES: bus.ADVISORIES_MAX_BYTES}


def test_everything_asked_when_it_fits() -> None:
    want = wanted()
    assert bus.fit_streams(want, {}, room=sum(want.values())) == want
    # existing streams with those limits already hold the reservation: nothing more is needed
    assert bus.fit_streams(want, want, room=0) == want


def test_less_room_scales_every_stream_by_one_factor_within_the_share() -> None:
    want = wanted()
    room = 40 * GiB
    sizes = bus.fit_streams(want, {}, room)
    assert sizes is not None and set(sizes) == set(want)
    assert sum(sizes.values()) <= room * bus.ROOM_SHARE
    assert sum(sizes.values()) > room * bus.ROOM_SHARE - len(want)  # the share, to rounding
    # each stream still fills after about the same number of alerts
    alerts = [sizes[n] / bus.STREAM_BYTES_PER_ALERT[n] for n in bus.STREAM_BYTES_PER_ALERT]
    assert max(alerts) - min(alerts) < 1
    ratios = [sizes[n] / want[n] for n in want]
    assert max(ratios) - min(ratios) < 1e-6


def test_existing_streams_are_never_shrunk_to_fit() -> None:
    want = wanted()
    big = {n: v // 2 for n, v in want.items()}  # made earlier, on a server with more storage
    sizes = bus.fit_streams(want, big, room=0)
    assert sizes == big
    # a second bootstrap on the sized streams leaves them as they are
    first = bus.fit_streams(want, {}, room=50 * GiB)
    assert first is not None
    left = 50 * GiB - sum(first.values())
    assert bus.fit_streams(want, first, room=left) == first
    # the room is known to a MiB (probed): a little more or less changes nothing
    assert bus.fit_streams(want, first, room=left + MiB) == first
    assert bus.fit_streams(want, first, room=left - MiB) == first


def test_the_settings_may_still_shrink_an_existing_stream() -> None:
    want = wanted(100 * GiB)
    bigger = {n: v * 2 for n, v in want.items()}
    assert bus.fit_streams(want, bigger, room=0) == want


def test_new_streams_get_at_least_their_floor_or_nothing_fits() -> None:
    want = wanted()
    floors = len(want) * MiB
    assert bus.fit_streams(want, {}, room=floors - 1) is None
    sizes = bus.fit_streams(want, {}, room=floors)
    assert sizes == dict.fromkeys(want, MiB)
    # one stream exists: only the new ones need room
    existing = {s.STREAM_IN: 10 * GiB}
    sizes = bus.fit_streams(want, existing, room=(len(want) - 1) * MiB)
    assert sizes is not None and sizes[s.STREAM_IN] == 10 * GiB


def test_the_accounts_per_stream_limit_caps_each_stream() -> None:
    want = wanted()
    sizes = bus.fit_streams(want, {}, room=10**15, cap=5 * GiB)
    assert sizes == dict.fromkeys(want, 5 * GiB) | {s.STREAM_ADVISORIES: bus.ADVISORIES_MAX_BYTES}


def test_the_warning_says_how_much_history_against_the_national_week() -> None:
    settings = Settings()
    per_alert = sum(bus.STREAM_BYTES_PER_ALERT.values())
    hour = bus.NATIONAL_ALERTS_PER_S * 3600 * per_alert  # one hour of national traffic
    sizes = {n: bus.NATIONAL_ALERTS_PER_S * 3600 * b for n, b in bus.STREAM_BYTES_PER_ALERT.items()}
    text = bus.history_held(sizes | {s.STREAM_ADVISORIES: MiB}, settings)
    assert sum(sizes.values()) == hour
    assert "ALERT_TIMING_STREAM_MAX_BYTES" in text
    assert f"about {bus.NATIONAL_ALERTS_PER_S * 3600:,} alerts, 1.0 h of national traffic" in text
    assert "0.6% of the 7-day retention" in text  # 1 h of 168

"""The pure pieces of `alert-timing bench`: distinct alerts, pacing, the message ledger."""

from __future__ import annotations

import msgspec
import pytest

from alert_timing.simulator.traffic import LogLine
from alert_timing_benchmarks import relays
from alert_timing_benchmarks.pipeline import (
    MIN_RATE,
    awaiting_timeout,
    input_rate,
    mean_rate,
    paced,
    stored_per_alert,
    traffic_since_snapshot,
)


def test_an_alert_key_is_the_first_json_string_value() -> None:
    assert relays.alert_key(relays.payload(42)) == b"N0000000042"
    assert relays.alert_key(relays.floor_output(relays.payload(7), relays.FLOOR_RECORD)) == b"N0000000007"


def test_redeliveries_and_copies_count_once() -> None:
    seen = relays.Distinct()
    assert seen.add([relays.payload(1), relays.payload(2)]) == 2
    # a redelivered message, and the copy a relay published again for it downstream
    assert seen.add([relays.payload(1), relays.floor_output(relays.payload(2), relays.FLOOR_DELIVER)]) == 2
    assert seen.add([relays.payload(3)]) == 3
    assert len(seen) == 3


def test_cpu_per_alert_sums_the_processes() -> None:
    assert relays.cpu_us_per_alert([0.25, 0.5, 0.25], 10_000) == 100.0
    assert relays.cpu_us_per_alert([1.0], 0) == 0.0


def test_input_rate_carries_the_alert_rate() -> None:
    # 1,100 inputs of which 1,000 alerts: 1,000 alerts/s need 1,100 inputs/s
    assert input_rate(1000.0, 1100, 1000) == pytest.approx(1100.0)
    assert input_rate(500.0, 0, 0) == 500.0


def test_paced_runs_take_a_share_of_the_measured_rate() -> None:
    assert paced(2000.0, 0.9, 20.0) == (pytest.approx(1800.0), 36_000)
    assert paced(2000.0, 0.5, 10.0) == (pytest.approx(1000.0), 10_000)
    # a pipeline measured very slow still gets a latency run at the slowest pace
    assert paced(50.0, 0.5, 10.0) == (MIN_RATE, int(MIN_RATE * 10))


def test_the_limit_is_the_mean_of_its_runs() -> None:
    assert mean_rate([3000.0, 2000.0]) == 2500
    assert mean_rate([]) == 0


def test_stored_messages_per_alert_over_every_stream() -> None:
    before = {"AST_IN": 10, "AST_EVENTS": 100, "AST_OUT": 5}
    after = {"AST_IN": 1110, "AST_EVENTS": 3100, "AST_OUT": 1005, "OBJ_metrics-snapshots": 4}
    total, by_stream = stored_per_alert(before, after, 1000)
    assert total == 5.1  # 1100 + 3000 + 1000 + 4 (a stream created in between counts from 0)
    assert by_stream == {"AST_EVENTS": 3.0, "AST_IN": 1.1, "AST_OUT": 1.0, "OBJ_metrics-snapshots": 0.004}
    assert stored_per_alert(before, after, 0) == (0.0, {})


def test_traffic_since_snapshot_counts_from_the_later_of_start_and_last_snapshot() -> None:
    assert traffic_since_snapshot(100.0, [], 170.0) == 70.0
    assert traffic_since_snapshot(100.0, [120.0, 150.0], 170.0) == 20.0
    assert traffic_since_snapshot(100.0, [90.0], 170.0) == 70.0


def test_records_awaiting_the_handshake_timeout_are_the_unacknowledged_ones_not_out() -> None:
    def line(outcome: str) -> LogLine:
        return LogLine(msgspec.json.encode({"outcome": outcome}), "id", 0)

    answers = {
        ("d1", "r1", None, "u"): [line("acknowledged")],
        ("d2", "r2", None, "u"): [line("failed"), line("failed")],  # never acknowledged
        ("d3", "r3", None, "u"): [line("failed"), line("acknowledged")],  # acknowledged on retry
        ("d4", "r4", None, "u"): [line("throttled")],
        ("d5", "r5", None, "u"): [line("failed")],  # never acknowledged, its record already out
    }
    expected = {"d1", "d2", "d3", "d4", "d5"}
    assert awaiting_timeout(answers, expected, {"d1", "d5"}) == 1
    assert awaiting_timeout(answers, expected, expected) == 0

"""The metrics core's state export and import: a snapshot taken at any point, read back, and
fed the rest of the log gives exactly the outputs and the state of one run over the whole log."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from alert_timing_benchmarks.metrics_core import synthetic_events
from services.metrics.core import (
    MetricsConfig,
    MetricsCore,
    Output,
    StateError,
    export_state,
    import_state,
)
from shared.events import (
    AnyEvent,
    ClockTick,
    DeliveryAttempted,
    DeliveryExpected,
    RejectedInput,
    ServiceResponseSeen,
    WallClock,
    encoder,
)
from shared.timefmt import parse_iso

T0 = parse_iso("2023-06-01T10:00:00Z")
MIN = 60_000
SU = "90-B3-D5-1F-30-01-00-00"
#: Small horizons and lags, so a short history already forgets windows and stalls the log.
CONFIG = MetricsConfig(done_horizon_ms=2 * 3_600_000, max_log_lag_ms=20 * MIN, idle_close_after_s=30.0)
COMPACT_EVERY = 3  # pack pending expectations often: the packed form is state too


def core_of(config: MetricsConfig = CONFIG) -> MetricsCore:
    return MetricsCore(config, compact_every=COMPACT_EVERY)


def expected(i: int, dsp: int, region: str, chf: bool, flags: tuple[str, ...]) -> DeliveryExpected:
    return DeliveryExpected(
        event_id=f"exp:{i}:{dsp}", delivery_id=f"d{i}", response_id=f"r{i}", region=region,  # type: ignore[arg-type]
        comms_hub_id=1000 + i, category="device_alert", alert_code="8F3F", dcc_alert_code=None,
        message_code="0x0082", originator="00-11-22-33-44-55-66-77", recipient=SU, service_user_id=SU,
        device_alert_time=dsp - 1500, chf_received=dsp - 500 if chf else None, csp_received=dsp - 150,
        csp_sent=dsp - 150, dsp_received=dsp, flags=flags)


@st.composite
def histories(draw: st.DrawFn) -> list[AnyEvent]:
    """A log of the metrics inputs: expectations (some repeated, some conflicting), attempts
    in any order around them (acknowledged, failed, repeated), the DSP clock, wall-clock moves,
    service responses, rejections with and without a time, over a few hours."""
    n = draw(st.integers(min_value=1, max_value=14))
    minute = st.integers(min_value=0, max_value=240)
    events: list[AnyEvent] = []
    for _ in range(draw(st.integers(min_value=1, max_value=60))):
        kind = draw(st.sampled_from(["exp", "exp", "att", "att", "tick", "wall", "resp", "rej"]))
        i = draw(st.integers(min_value=0, max_value=n))
        t = T0 + draw(minute) * MIN + draw(st.integers(min_value=0, max_value=59_999))
        if kind == "exp":
            events.append(expected(i, t, draw(st.sampled_from(["north", "central", "south"])), draw(st.booleans()),
                                   draw(st.sampled_from([(), ("csp_received_mapped",), ("clock_skew",)]))))
        elif kind == "att":
            outcome = draw(st.sampled_from(["acknowledged", "failed", "throttled"]))
            if outcome == "throttled":  # held back by Alert Storm Protection: never passed
                events.append(DeliveryAttempted(
                    event_id=f"att:{i}:{t}", delivery_id=f"d{i}", response_id=f"r{i}", dcc_alert_code=None,
                    service_user_id=SU, su_passed=None, su_acknowledged=None, outcome="throttled"))
                continue
            ack_at = t + draw(st.integers(min_value=-2000, max_value=900_000)) if outcome == "acknowledged" else None
            events.append(DeliveryAttempted(
                event_id=f"att:{i}:{t}", delivery_id=f"d{i}", response_id=f"r{i}", dcc_alert_code=None,
                service_user_id=SU, su_passed=t, su_acknowledged=ack_at, outcome=outcome,  # type: ignore[arg-type]
                throttled_count=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=5)))))
        elif kind == "tick":
            events.append(ClockTick(event_id=f"tick:{t}", time=t))
        elif kind == "wall":
            lag = draw(st.integers(min_value=0, max_value=40 * MIN))
            events.append(WallClock(event_id=f"wall:{t}:{lag}", partition=0, alert_clock=t, log_clock=t - lag))
        elif kind == "resp":
            events.append(ServiceResponseSeen(event_id=f"rsp:{i}", response_id=f"r{i}", region="south",
                                              cra_flag="02", message_code="0x0001", dsp_received=t))
        else:
            events.append(RejectedInput(
                event_id=f"rej:{i}", stage="hub-capture", reason="bad_json", message="not JSON",
                subject=draw(st.sampled_from(["ast.in.csp-north", "ast.in.dsp-delivery"])), raw=b"{",
                dsp_received=draw(st.one_of(st.none(), st.just(t)))))
    # some of it again, as a redelivery would bring it
    events += draw(st.lists(st.sampled_from(events), max_size=5))
    return events


def encoded(outputs: list[Output]) -> list[bytes]:
    return [encoder.encode(r) for o in outputs for r in o.records] + [
        encoder.encode(c) for o in outputs for c in o.closed]


def full_and_resumed(events: list[AnyEvent], cut: int) -> tuple[MetricsCore, list[Output], MetricsCore, list[Output]]:
    full = core_of()
    full_out = [full.apply(events)]
    head = core_of()
    head_out = head.apply(events[:cut])
    resumed = import_state(export_state(head), CONFIG)
    resumed.join.compact_every = COMPACT_EVERY
    return full, full_out, resumed, [head_out, resumed.apply(events[cut:])]


@hsettings(max_examples=200, deadline=None)
@given(histories(), st.data())
def test_snapshot_and_tail_is_the_full_replay_at_any_cut(events: list[AnyEvent], data: st.DataObject) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(events)), label="cut")
    full, full_out, resumed, resumed_out = full_and_resumed(events, cut)
    assert encoded(resumed_out) == encoded(full_out)
    assert [r.revision for o in resumed_out for r in o.records] == [r.revision for o in full_out for r in o.records]
    assert export_state(resumed) == export_state(full)
    assert resumed.stats() == full.stats()


def test_snapshot_of_a_long_history_resumes_exactly() -> None:
    """Thousands of deliveries over four hours: timeouts pending in buckets, packed
    expectations, windows closed and forgotten, revisions, at a few cuts."""
    events = synthetic_events(4_000, span_ms=4 * 3_600_000)
    for cut in (1, 997, len(events) // 2, len(events) - 3):
        full, full_out, resumed, resumed_out = full_and_resumed(events, cut)
        assert encoded(resumed_out) == encoded(full_out)
        assert export_state(resumed) == export_state(full)
    assert full.stats().reports_emitted > 10 and full.stats().windows_retained > 0


def test_export_leaves_the_core_as_it_is() -> None:
    events = synthetic_events(500, span_ms=3_600_000)
    core = core_of()
    core.apply(events[:700])
    before = export_state(core)
    assert export_state(core) == before
    other = core_of()
    other.apply(events[:700])
    assert encoded([core.apply(events[700:])]) == encoded([other.apply(events[700:])])


def test_state_under_another_configuration_or_garbled_is_refused() -> None:
    core = core_of()
    core.apply(synthetic_events(50, span_ms=600_000))
    data = export_state(core)
    with pytest.raises(StateError, match="configuration"):
        import_state(data, msgspec.structs.replace(CONFIG, handshake_timeout_ms=60_000))
    with pytest.raises(StateError):
        import_state(data[: len(data) // 2], CONFIG)
    with pytest.raises(StateError):
        import_state(b"\x93\x01\x02", CONFIG)


def test_wall_clock_event_is_a_pure_decision_and_replays() -> None:
    """The wall clock's move is an event: deciding it changes nothing; applying it (live, then
    in a replay of the log that holds it) closes the same windows with the same revisions."""
    events = [expected(1, T0 + MIN, "north", True, ()), DeliveryAttempted(
        event_id="a1", delivery_id="d1", response_id="r1", dcc_alert_code=None, service_user_id=SU,
        su_passed=T0 + MIN + 50, su_acknowledged=T0 + MIN + 900, outcome="acknowledged")]
    live = core_of()
    live.apply(events)
    state = export_state(live)
    wall = 1_000_000
    assert live.wall_clock_event(wall + 29_999, wall) is None  # not idle long enough
    move = live.wall_clock_event(wall + 40 * MIN, wall)
    assert move is not None and live.wall_clock_due(move)
    assert export_state(live) == state  # deciding is pure
    closed = live.apply([move]).closed
    assert [c.report.window_start for c in closed] == ["2023-06-01T10:00:00.000Z", "2023-06-01T10:15:00.000Z"]
    replay = core_of()
    assert encoded([Output(closed=replay.apply([*events, move]).closed)]) == encoded([Output(closed=closed)])
    # a quiet minute that closes nothing is not worth an event in the log
    small = live.wall_clock_event(wall + 40 * MIN + 1000, wall)
    assert small is not None and not live.wall_clock_due(small)

"""The metrics core: join, handshake timeout, watermark, 15-minute windows, revisions, sketches.

Expected numbers are worked out by hand from the fixtures (times in the comments).
Configuration: 15-minute windows, 5 minutes allowed lateness, 5 minutes handshake timeout,
so window [s, s+15m) closes when event time reaches s + 25 minutes. Event time is the slower
of two clocks, the alerts' (dsp_received) and the delivery log's (su_passed, su_acknowledged),
but at most 30 minutes (max_log_lag_ms) behind the alerts'; a ClockTick moves both clocks, so
after a tick at T, later than every input, event time is T.
"""

from __future__ import annotations

import random

import msgspec
import pytest
from ddsketch import DDSketch
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from alert_timing_benchmarks.metrics_core import synthetic_events
from services.metrics.compact import fast_iso
from services.metrics.core import (
    ClosedWindow,
    MetricsConfig,
    MetricsCore,
    Output,
    ddsketch_of,
    import_state,
    merge_reports,
    sketch_quantiles,
)
from shared import subjects as s
from shared.alert_codes import alert_name
from shared.events import (
    AstRecord,
    ClockTick,
    DeliveryAttempted,
    RejectedInput,
    ReportRow,
    RollupReport,
    ServiceResponseSeen,
    SketchBins,
    WindowReport,
    encoder,
)
from shared.sketches import Sketcher
from shared.timefmt import format_iso
from tests.harness.metrics_events import SUPPLIER, at, att, exp, tick

MIN = 60_000


def run(core: MetricsCore, *events: object) -> Output:
    return core.apply(events)


def row(report: WindowReport | RollupReport, region: str = "all", category: str = "all") -> ReportRow:
    for r in report.rows:
        if (r.region, r.category) == (region, category):
            return r
    raise AssertionError(f"no row {region}/{category} in {[(r.region, r.category) for r in report.rows]}")


def counts(r: ReportRow) -> dict[str, int]:
    return {k: getattr(r, k) for k in ("alerts", "complete", "no_handshake", "incomplete", "missing_hub_timestamp",
                                       "clock_skew", "delivery_without_alert", "service_responses_seen", "rejected")}


ZERO = dict.fromkeys(("alerts", "complete", "no_handshake", "incomplete", "missing_hub_timestamp", "clock_skew",
                      "delivery_without_alert", "service_responses_seen", "rejected"), 0)


# ------------------------------------------------------------------------------ join


def test_complete_record_fields_and_legs() -> None:
    core = MetricsCore()
    # dsp 10:01:00.500; chf 10:01:00.000; csp received = sent 10:01:00.350; device 10:00:59.000
    # su_passed 10:01:00.540, acknowledged 10:01:01.240
    out = run(core, exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", "10:01:01.240"))
    assert out.closed == []
    [rec] = out.records
    assert rec == AstRecord(
        delivery_id="d1", response_id="resp-d1", revision=1, region="north", comms_hub_id=1_234_567_890,
        category="device_alert", alert_code="8F3F", alert_name=alert_name("8F3F"), dcc_alert_code=None,
        message_code="0x0082", originator="00-11-22-33-44-55-66-77", recipient=SUPPLIER, service_user_id=SUPPLIER,
        device_alert_time="2023-06-01T10:00:59.000Z", chf_received="2023-06-01T10:01:00.000Z",
        csp_received="2023-06-01T10:01:00.350Z", csp_sent="2023-06-01T10:01:00.350Z",
        dsp_received="2023-06-01T10:01:00.500Z", su_passed="2023-06-01T10:01:00.540Z",
        su_acknowledged="2023-06-01T10:01:01.240Z",
        hub_to_csp_ms=350, csp_to_dsp_ms=150, dsp_to_su_ms=40, su_handshake_ms=700, end_to_end_ms=1240,
        status="complete", flags=["csp_received_mapped"], delivery_attempts=1,
    )
    assert rec.alert_name  # the GBCS table names 8F3F
    assert core.stats().pending == 0


def test_missing_hub_timestamp_is_flagged_not_incomplete() -> None:
    core = MetricsCore()
    [rec] = run(core, exp("d1", "10:01:00.500", chf=None), att("d1", "10:01:00.540", "10:01:01.240")).records
    assert rec.status == "complete"
    assert rec.flags == ["csp_received_mapped", "missing_hub_timestamp"]
    assert (rec.hub_to_csp_ms, rec.end_to_end_ms) == (None, None)
    assert (rec.csp_to_dsp_ms, rec.dsp_to_su_ms, rec.su_handshake_ms) == (150, 40, 700)


def test_missing_csp_received_makes_it_incomplete() -> None:
    core = MetricsCore()
    [rec] = run(core, exp("d1", "10:01:00.500", csp_received=None, flags=()),
                att("d1", "10:01:00.540", "10:01:01.240")).records
    assert rec.status == "incomplete"
    assert rec.csp_received is None and rec.hub_to_csp_ms is None
    assert rec.end_to_end_ms == 1240 and rec.flags == []


def test_acknowledged_without_time_is_incomplete() -> None:
    core = MetricsCore()
    [rec] = run(core, exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", None)).records
    assert rec.status == "incomplete"
    assert rec.su_acknowledged is None and rec.su_handshake_ms is None and rec.end_to_end_ms is None


def test_attempt_before_expectation_gives_the_same_record() -> None:
    in_order = run(MetricsCore(), exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", "10:01:01.240")).records
    reverse = run(MetricsCore(), att("d1", "10:01:00.540", "10:01:01.240"), exp("d1", "10:01:00.500")).records
    assert encoder.encode(in_order) == encoder.encode(reverse)


def test_duplicates_never_make_a_revision() -> None:
    core = MetricsCore()
    e = exp("d1", "10:01:00.500")
    a = att("d1", "10:01:00.540", "10:01:01.240")
    same_ack_new_id = att("d1", "10:01:00.540", "10:01:01.240", eid="att:d1:redelivered")
    out = run(core, e, e, a, a, same_ack_new_id, e)
    assert [(r.delivery_id, r.revision) for r in out.records] == [("d1", 1)]
    assert core.stats().duplicates == 4
    assert core.stats().pending == 0


def test_earliest_pass_and_earliest_acknowledgement_with_attempt_count() -> None:
    core = MetricsCore()
    # failed attempt passed 10:01:00.540, retry passed 10:01:30.000 acked 10:01:30.400
    out = run(core, exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", outcome="failed"),
              att("d1", "10:01:30.000", "10:01:30.400"))
    [rec] = out.records
    assert rec.su_passed == "2023-06-01T10:01:00.540Z"  # earliest attempt
    assert rec.su_acknowledged == "2023-06-01T10:01:30.400Z"  # the acknowledged one
    assert (rec.dsp_to_su_ms, rec.su_handshake_ms, rec.end_to_end_ms) == (40, 29_860, 30_400)
    assert rec.delivery_attempts == 2 and rec.status == "complete"
    # another (distinct) acknowledged attempt later: a revision (3 attempts), same earliest ack
    [rev] = run(core, att("d1", "10:02:00.000", "10:02:00.100")).records
    assert (rev.revision, rev.delivery_attempts, rev.su_acknowledged) == (2, 3, "2023-06-01T10:01:30.400Z")


# ------------------------------------------------------------------- handshake timeout


def test_handshake_timeout_exactly_at_deadline_then_revised_by_late_ack() -> None:
    core = MetricsCore()
    run(core, exp("d1", "10:01:00.500"))
    # deadline = dsp + 5 min = 10:06:00.500; watermark = event time - 5 min
    assert run(core, tick("10:11:00.499")).records == []
    [nh] = run(core, tick("10:11:00.500")).records
    assert (nh.status, nh.revision, nh.su_passed, nh.delivery_attempts) == ("no_handshake", 1, None, 0)
    assert (nh.hub_to_csp_ms, nh.csp_to_dsp_ms, nh.dsp_to_su_ms, nh.su_handshake_ms, nh.end_to_end_ms) == (
        350, 150, None, None, None)
    out = run(core, att("d1", "10:01:00.540", "10:01:01.240"))
    [rev] = out.records
    assert (rev.status, rev.revision, rev.end_to_end_ms) == ("complete", 2, 1240)
    assert out.closed == []  # window 10:00 still open (closes at event time 10:25)
    closed = run(core, tick("10:25:00.000")).closed
    assert [c.report.revision for c in closed] == [1]
    assert counts(row(closed[0].report)) == {**ZERO, "alerts": 1, "complete": 1}
    assert closed[0].records == [rev]


def test_no_handshake_keeps_su_passed_of_failed_attempts() -> None:
    core = MetricsCore()
    run(core, exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", outcome="failed"))
    [nh] = run(core, tick("10:11:00.500")).records
    assert (nh.status, nh.su_passed, nh.dsp_to_su_ms, nh.delivery_attempts) == (
        "no_handshake", "2023-06-01T10:01:00.540Z", 40, 1)


def test_record_with_only_one_leg() -> None:
    """No device time, no hub timestamp, no CSP receipt, never passed to a user: only the
    CSP->DSP leg can be measured (csp_sent and dsp_received are always there)."""
    core = MetricsCore()
    run(core, exp("d1", "10:01:00.500", chf=None, csp_received=None, device=None, code=None, flags=()))
    [rec] = run(core, tick("10:11:00.500")).records
    assert rec.status == "no_handshake"
    assert (rec.device_alert_time, rec.chf_received, rec.csp_received, rec.su_passed, rec.su_acknowledged) == (
        None, None, None, None, None)
    assert (rec.hub_to_csp_ms, rec.csp_to_dsp_ms, rec.dsp_to_su_ms, rec.su_handshake_ms, rec.end_to_end_ms) == (
        None, 150, None, None, None)
    assert rec.alert_name is None and rec.flags == ["missing_hub_timestamp"]
    [closed] = run(core, tick("10:25:00.000")).closed
    all_row = row(closed.report)
    assert counts(all_row) == {**ZERO, "alerts": 1, "no_handshake": 1, "missing_hub_timestamp": 1}
    legs = all_row.legs
    assert legs["csp_to_dsp_ms"].count == 1 and legs["csp_to_dsp_ms"].max == 150
    assert abs(legs["csp_to_dsp_ms"].p50 - 150) <= 0.01 * 150  # type: ignore[operator]
    for name in ("hub_to_csp_ms", "dsp_to_su_ms", "su_handshake_ms", "end_to_end_ms"):
        leg = legs[name]
        assert (leg.count, leg.p50, leg.p90, leg.p95, leg.p99, leg.max) == (0, None, None, None, None, None)


# ------------------------------------------------------------------------- windows


def test_window_closes_exactly_when_watermark_passes_end_plus_timeout() -> None:
    core = MetricsCore()
    run(core, exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", "10:01:01.240"))
    assert run(core, tick("10:24:59.999")).closed == []
    [closed] = run(core, tick("10:25:00.000")).closed
    rep = closed.report
    assert (rep.window_start, rep.window_end, rep.revision) == (
        "2023-06-01T10:00:00.000Z", "2023-06-01T10:15:00.000Z", 1)
    assert (closed.start_ms, closed.end_ms) == (at("10:00:00.000"), at("10:15:00.000"))
    assert rep.sketch_relative_accuracy == 0.01
    assert [(r.region, r.category) for r in rep.rows] == [("all", "all"), ("north", "all"), ("north", "device_alert")]
    for r in rep.rows:
        assert counts(r) == {**ZERO, "alerts": 1, "complete": 1}
        assert r.legs["end_to_end_ms"].count == 1 and r.legs["end_to_end_ms"].max == 1240


def test_allowed_lateness_then_late_record_revises_the_closed_window() -> None:
    core = MetricsCore()
    run(core, exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", "10:01:01.240"), tick("10:19:00.000"))
    # 5 minutes behind event time, but the window is still open: no revision, just included
    out = run(core, exp("d2", "10:14:00.000"), att("d2", "10:14:00.100", "10:14:00.300"))
    assert [r.delivery_id for r in out.records] == ["d2"] and out.closed == []
    [first] = run(core, tick("10:25:00.000")).closed
    assert first.report.revision == 1 and row(first.report).alerts == 2
    # after the close: d3 (dsp 10:05) already past its handshake deadline -> no_handshake at once,
    # window 10:00 reported again (r2); its acknowledgement -> record r2 and window r3
    out = run(core, exp("d3", "10:05:00.000"))
    assert [(r.delivery_id, r.revision, r.status) for r in out.records] == [("d3", 1, "no_handshake")]
    assert [c.report.revision for c in out.closed] == [2]
    assert counts(row(out.closed[0].report)) == {**ZERO, "alerts": 3, "complete": 2, "no_handshake": 1}
    out = run(core, att("d3", "10:05:00.050", "10:05:00.250"))
    assert [(r.delivery_id, r.revision, r.status) for r in out.records] == [("d3", 2, "complete")]
    [rev] = out.closed
    assert rev.report.revision == 3
    assert counts(row(rev.report)) == {**ZERO, "alerts": 3, "complete": 3}
    assert [(r.delivery_id, r.revision) for r in rev.records] == [("d1", 1), ("d2", 1), ("d3", 2)]


def test_status_change_via_revision_in_a_closed_window() -> None:
    core = MetricsCore()
    run(core, exp("d1", "10:01:00.500"))
    out = run(core, tick("10:25:00.000"))  # timeout at wm 10:06:00.500, window closes at wm 10:20
    assert [r.status for r in out.records] == ["no_handshake"]
    assert counts(row(out.closed[0].report)) == {**ZERO, "alerts": 1, "no_handshake": 1}
    out = run(core, att("d1", "10:01:00.540", "10:01:01.240"))
    assert [(r.revision, r.status) for r in out.records] == [(2, "complete")]
    [rev] = out.closed
    assert rev.report.revision == 2
    assert counts(row(rev.report)) == {**ZERO, "alerts": 1, "complete": 1}
    assert rev.records == out.records


def test_empty_windows_are_reported_with_zero_counts() -> None:
    core = MetricsCore()
    run(core, exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", "10:01:01.240"))
    closed = run(core, tick("11:30:00.000")).closed  # wm 11:25: windows up to 11:00 close
    assert [c.report.window_start[11:16] for c in closed] == ["10:00", "10:15", "10:30", "10:45", "11:00"]
    for c in closed[1:]:
        assert c.records == []
        [only] = c.report.rows
        assert (only.region, only.category) == ("all", "all") and counts(only) == ZERO
        assert all(leg.count == 0 and leg.p99 is None for leg in only.legs.values())


def test_a_day_of_ticks_gives_96_windows() -> None:
    core = MetricsCore()
    closed: list[ClosedWindow] = []
    for minute in range(0, 24 * 60 + 25):  # last tick 00:24 next day: window 00:00 stays open
        closed += core.apply([ClockTick(event_id=f"t{minute}", time=at("00:00:00.000") + minute * MIN)]).closed
    assert len(closed) == 96
    assert closed[0].report.window_start == "2023-06-01T00:00:00.000Z"
    assert closed[-1].report.window_start == "2023-06-01T23:45:00.000Z"


def test_window_with_only_service_responses_and_rejections() -> None:
    core = MetricsCore()
    events = [
        ServiceResponseSeen(event_id="sr1", response_id="x1", region="north", cra_flag="02",
                            message_code="0x0001", dsp_received=at("10:16:00.000")),
        ServiceResponseSeen(event_id="sr2", response_id="x2", region="south", cra_flag="02",
                            message_code="0x0001", dsp_received=at("10:17:00.000")),
        ServiceResponseSeen(event_id="sr2", response_id="x2", region="south", cra_flag="02",
                            message_code="0x0001", dsp_received=at("10:17:00.000")),  # redelivered
        RejectedInput(event_id="rj1", stage="hub-capture", reason="bad_json", message="not JSON",
                      subject=s.IN_CSP_CENTRAL, dsp_received=at("10:18:00.000")),
        tick("10:18:00.000"),  # the delivery log's clock at 10:18 too: event time 10:18
        RejectedInput(event_id="rj2", stage="dsp-mapping", reason="bad_timestamp", message="bad",
                      subject=s.IN_DSP_DELIVERY),  # no time of its own: counted at event time 10:18
    ]
    run(core, *events)
    [closed] = run(core, tick("10:40:00.000")).closed
    rep = closed.report
    assert rep.window_start == "2023-06-01T10:15:00.000Z" and closed.records == []
    assert [(r.region, r.category) for r in rep.rows] == [("all", "all"), ("central", "all"), ("north", "all"),
                                                          ("south", "all")]
    assert counts(row(rep)) == {**ZERO, "service_responses_seen": 2, "rejected": 2}
    assert counts(row(rep, "central")) == {**ZERO, "rejected": 1}
    assert counts(row(rep, "north")) == {**ZERO, "service_responses_seen": 1}
    assert counts(row(rep, "south")) == {**ZERO, "service_responses_seen": 1}
    assert core.stats().duplicates == 1


def test_late_service_response_revises_its_window() -> None:
    core = MetricsCore()
    run(core, tick("10:01:00.000"), tick("10:25:00.000"))
    [rev] = run(core, ServiceResponseSeen(event_id="sr1", response_id="x1", region="central", cra_flag="02",
                                          message_code="0x0001", dsp_received=at("10:14:59.999"))).closed
    assert rev.report.revision == 2 and row(rev.report).service_responses_seen == 1


def test_clock_skew_kept_in_record_flagged_and_out_of_percentiles() -> None:
    core = MetricsCore()
    # d1: csp_sent 10:01:00.600 is after dsp_received 10:01:00.500 -> csp_to_dsp = -100
    skewed = exp("d1", "10:01:00.500", csp_received="+100", csp_sent="+100")
    run(core, skewed, att("d1", "10:01:00.540", "10:01:01.240"),
        exp("d2", "10:02:00.000"), att("d2", "10:02:00.010", "10:02:00.210"))
    [closed] = run(core, tick("10:25:00.000")).closed
    d1 = closed.records[0]
    assert d1.csp_to_dsp_ms == -100 and d1.hub_to_csp_ms == 600
    assert d1.flags == ["clock_skew", "csp_received_mapped"] and d1.status == "complete"
    r = row(closed.report)
    assert r.clock_skew == 1 and r.alerts == 2
    legs = r.legs
    assert legs["csp_to_dsp_ms"].count == 1 and legs["csp_to_dsp_ms"].min == 150  # only d2's 150
    assert legs["end_to_end_ms"].count == 2  # d1's other legs still count
    assert (legs["end_to_end_ms"].min, legs["end_to_end_ms"].max) == (710, 1240)


def test_percentiles_follow_the_stated_rank_rule() -> None:
    """Five end-to-end values 100, 200, 300, 400, 1000: rank q*(n-1) -> p50 is x[2] = 300,
    p90/p95/p99 are x[3] = 400 (each within 1 %); count, min, max, sum exact."""
    core = MetricsCore()
    events = []
    for i, e2e in enumerate((100, 200, 300, 400, 1000)):
        # chf = dsp - 500 ms, so acknowledged at chf + e2e
        events += [exp(f"d{i}", f"10:0{i}:00.500"),
                   att(f"d{i}", f"10:0{i}:00.000", f"10:0{i}:00.{e2e:03d}" if e2e < 1000 else f"10:0{i}:01.000")]
    run(core, *events)
    [closed] = run(core, tick("10:25:00.000")).closed
    leg = row(closed.report).legs["end_to_end_ms"]
    assert (leg.count, leg.min, leg.max, leg.sum) == (5, 100, 1000, 2000)
    assert abs(leg.p50 - 300) <= 3  # type: ignore[operator]
    for p in (leg.p90, leg.p95, leg.p99):
        assert abs(p - 400) <= 4  # type: ignore[operator]


# ------------------------------------------------------------------------ orphans


def test_delivery_without_alert_is_counted_then_joined_when_the_alert_turns_up() -> None:
    core = MetricsCore()
    out = run(core, att("ghost", "10:02:00.000", "10:02:01.000"))
    assert out.records == [] and core.stats().pending == 1
    run(core, tick("10:12:00.000"))  # wm 10:07:00 = su_passed + 5 min: counted
    assert core.stats().pending == 0
    [closed] = run(core, tick("10:25:00.000")).closed
    assert closed.records == []
    assert [(r.region, r.category) for r in closed.report.rows] == [("all", "all")]
    assert counts(row(closed.report)) == {**ZERO, "alerts": 1, "incomplete": 1, "delivery_without_alert": 1}
    out = run(core, exp("ghost", "10:01:59.900"))
    [rec] = out.records
    assert (rec.status, rec.revision, rec.dsp_to_su_ms) == ("complete", 1, 100)
    [rev] = out.closed
    assert rev.report.revision == 2
    assert counts(row(rev.report)) == {**ZERO, "alerts": 1, "complete": 1}


# ------------------------------------------------------------------ wall clock, horizon


def test_wall_clock_closes_windows_of_a_quiet_stream() -> None:
    core = MetricsCore()
    run(core, exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", "10:01:01.240"))
    wall = 1_700_000_000_000
    assert not core.on_wall_clock(wall + 29_999, wall)  # not idle long enough
    assert not core.on_wall_clock(wall + 60_000, wall)  # idle, event time 10:02:01.240: nothing due
    out = core.on_wall_clock(wall + 24 * MIN, wall)  # event time 10:25:01.240
    assert [c.report.window_start for c in out.closed] == ["2023-06-01T10:00:00.000Z"]
    assert core.stats().event_time == "2023-06-01T10:25:01.240Z"


def test_windows_are_forgotten_after_the_horizon() -> None:
    core = MetricsCore(MetricsConfig(done_horizon_ms=60 * MIN))
    run(core, exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", "10:01:01.240"))
    run(core, tick("11:25:00.000"))  # window 10:00 forgotten at wm >= 10:15 + 5 min + 60 min
    assert core.stats().deliveries_tracked == 0
    out = run(core, exp("late", "10:03:00.000"), att("late", "10:03:00.010", "10:03:00.020"))
    # no_handshake at once (its deadline is long past), then revised by its acknowledgement
    assert [(r.delivery_id, r.revision, r.status) for r in out.records] == [
        ("late", 1, "no_handshake"), ("late", 2, "complete")]
    assert out.closed == []
    assert core.stats().too_late >= 1


def test_an_acknowledgement_revises_a_record_resolved_after_its_window_was_forgotten() -> None:
    """Event time ran past the horizon while the expectation was held up (a stage upstream
    stalled): it resolves at once as no_handshake, with no report to revise, and the
    acknowledgement that follows still revises the record; both are held until the window of
    the event time they were resolved at is forgotten in its turn."""
    core = MetricsCore(MetricsConfig(done_horizon_ms=60 * MIN))
    run(core, exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", "10:01:01.240"))
    run(core, tick("11:25:00.000"))  # window 10:00 forgotten
    out = run(core, exp("late", "10:03:00.000"))
    assert [(r.delivery_id, r.revision, r.status) for r in out.records] == [("late", 1, "no_handshake")]
    out = run(core, att("late", "10:03:00.010", "10:03:00.020"))
    assert [(r.delivery_id, r.revision, r.status) for r in out.records] == [("late", 2, "complete")]
    assert out.closed == []  # no window of its own to report again
    assert core.stats().deliveries_tracked == 1
    state = core.export_state()
    assert import_state(state, core.config).export_state() == state
    run(core, tick("13:00:00.000"))  # the 11:15 window (event time 11:25) is forgotten too
    assert core.stats().deliveries_tracked == 0


def _figures(outputs: list[Output]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The latest record of each delivery (revision left out) and the latest rows of each window."""
    records: dict[str, AstRecord] = {}
    reports: dict[str, WindowReport] = {}
    for out in outputs:
        for r in out.records:
            if r.delivery_id not in records or r.revision > records[r.delivery_id].revision:
                records[r.delivery_id] = r
        for c in out.closed:
            w = c.report.window_start
            if w not in reports or c.report.revision > reports[w].revision:
                reports[w] = c.report
    return ({d: encoder.encode(msgspec.structs.replace(r, revision=0)) for d, r in records.items()},
            {w: encoder.encode(r.rows) for w, r in reports.items()})


def test_service_responses_running_ahead_of_a_stalled_dsp_mapping_change_no_figure() -> None:
    """dsp-mapping paused while the traffic goes on and ends: csp-enrichment's service responses
    (which do not pass through dsp-mapping) arrive for more than a day of event time before the
    expectations and acknowledgements of the alerts between them; then the delivery log is
    silent and the stream quiet on the wall clock. The backlog that follows gives the figures
    of the undisturbed order: responses move no clock, so no window of the backlog is closed,
    let alone forgotten, before its deliveries come."""
    day = 86_400_000

    def response(n: int, ms: int) -> ServiceResponseSeen:
        return ServiceResponseSeen(event_id=f"sr{n}", response_id=f"x{n}", region="north", cra_flag="02",
                                   message_code="0x0001", dsp_received=ms)

    d1, d2 = exp("d1", "10:00:00.500"), exp("d2", "10:30:00.500")
    a1, a2 = att("d1", "10:00:00.600", "10:00:01.000"), att("d2", "10:30:00.600", "10:30:01.000")
    responses = [response(n, at("11:00:00.000") + n * 3_600_000) for n in range(28)]  # to day 2, 14:00
    end = tick("15:00:00.000")
    end = ClockTick(event_id="end", time=end.time + day)

    undisturbed = MetricsCore()
    kept_up = [run(undisturbed, d1, a1, d2, a2), run(undisturbed, *responses), run(undisturbed, end)]

    stalled = MetricsCore()
    wall = 1_000_000_000
    paused = [run(stalled, d1, a1), run(stalled, *responses)]
    # the delivery log silent for the idle-close time while inputs still come, then no input at all
    paused.append(stalled.on_wall_clock(wall + 31_000, wall + 30_000, wall))
    paused.append(stalled.on_wall_clock(wall + 75_000, wall + 30_000, wall))
    paused += [run(stalled, d2, a2), run(stalled, end)]  # dsp-mapping resumed: its backlog

    records, reports = _figures(paused)
    want_records, want_reports = _figures(kept_up)
    assert records == want_records
    assert reports.keys() == want_reports.keys()
    assert [w for w in want_reports if reports[w] != want_reports[w]] == []
    assert row(next(c.report for o in kept_up for c in o.closed
                    if c.report.window_start == "2023-06-01T10:30:00.000Z")).complete == 1


def test_a_jump_beyond_the_horizon_is_not_back_filled() -> None:
    core = MetricsCore()
    run(core, exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", "10:01:01.240"))
    closed = run(core, ClockTick(event_id="far", time=at("10:00:00.000") + 10 * 86_400_000)).closed
    starts = [c.report.window_start for c in closed]
    assert starts[0] == "2023-06-01T10:00:00.000Z"
    assert len(closed) < 200  # a day and a bit, not ten days of empty windows


def test_late_window_before_the_first_report_reports_the_gap() -> None:
    core = MetricsCore()
    run(core, tick("11:00:00.000"), tick("11:25:00.000"))  # window 11:00 reported
    out = run(core, exp("d0", "10:31:00.000"))  # already past its deadline: no_handshake at once
    assert [(c.report.window_start[11:16], c.report.revision) for c in out.closed] == [("10:30", 1), ("10:45", 1)]
    assert row(out.closed[0].report).no_handshake == 1 and row(out.closed[1].report).alerts == 0
    out = run(core, att("d0", "10:31:00.010", "10:31:00.020"))
    assert [(c.report.window_start[11:16], c.report.revision) for c in out.closed] == [("10:30", 2)]
    assert row(out.closed[0].report).complete == 1


# ------------------------------------------------------------------------ two clocks


def hms(ms: int) -> str:
    """Epoch ms on 2023-06-01 as '10:01:00.500' (for the fixture helpers)."""
    return format_iso(ms)[11:23]


def test_reporting_starts_at_the_first_window_that_saw_an_event() -> None:
    """An expectation first: the delivery log's clock has not started, so event time is
    30 minutes behind the alert (09:31:00.500); still, the first window reported is 10:00,
    the first one with an event, whichever of the alert and its acknowledgement comes first."""
    e, a = exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", "10:01:01.240")
    for order in ((e, a), (a, e)):
        core = MetricsCore()
        closed = run(core, *order).closed + run(core, tick("10:25:00.000")).closed
        assert [(c.report.window_start[11:16], c.report.revision) for c in closed] == [("10:00", 1)]
        assert counts(row(closed[0].report)) == {**ZERO, "alerts": 1, "complete": 1}


def test_alerts_racing_ahead_of_their_acknowledgements_do_not_close_windows_under_them() -> None:
    """Both feeds at 10:00, then 28 alerts (10:01:30 to 10:28:30) before any of their
    acknowledgements: the delivery log's clock stays at 10:00 and holds event time there (one
    clock, the greatest time seen, would be 10:28:30: d01 to d18 timed out and window 10:00
    closed). Each acknowledgement (passed dsp + 40 ms, acknowledged dsp + 1 s) then makes a
    first record in an open window, never a revision. Window 10:00 closes once the log's clock
    passes 10:25 (d25's acknowledgement at 10:25:31: event time 10:25:31, watermark 10:20:31);
    window 10:15 once a tick at 10:45 moves both clocks on."""
    core = MetricsCore()
    run(core, tick("10:00:00.000"))
    out = run(core, *[exp(f"d{m:02d}", f"10:{m:02d}:30.000") for m in range(1, 29)])
    assert out.records == [] and out.closed == []
    assert core.stats().event_time == "2023-06-01T10:00:00.000Z" and core.pending == 28

    records: list[AstRecord] = []
    closed: list[tuple[int, ClosedWindow]] = []
    for m in range(1, 29):
        out = run(core, att(f"d{m:02d}", f"10:{m:02d}:30.040", f"10:{m:02d}:31.000"))
        records += out.records
        closed += [(m, c) for c in out.closed]
    assert [(r.delivery_id, r.revision, r.status) for r in records] == [
        (f"d{m:02d}", 1, "complete") for m in range(1, 29)]
    assert [(m, c.report.window_start[11:16], c.report.revision) for m, c in closed] == [(25, "10:00", 1)]
    first = closed[0][1]
    assert counts(row(first.report)) == {**ZERO, "alerts": 14, "complete": 14}  # d01 to d14
    assert first.records == records[:14]
    # the alerts' clock (10:28:30) now holds event time back: window 10:15 still open
    assert core.stats().event_time == "2023-06-01T10:28:30.000Z" and core.pending == 0

    out = run(core, tick("10:45:00.000"))  # watermark 10:40: window 10:15 (closes at 10:35)
    assert out.records == []
    assert [(c.report.window_start[11:16], c.report.revision) for c in out.closed] == [("10:15", 1)]
    assert counts(row(out.closed[0].report)) == {**ZERO, "alerts": 14, "complete": 14}  # d15 to d28
    assert out.closed[0].records == records[14:]


@pytest.mark.parametrize("lag_min", [30, 10])
def test_a_stalled_delivery_log_holds_windows_open_for_max_log_lag_at_most(lag_min: int) -> None:
    """The delivery log stops at 10:00 while expectations keep coming: once the service's wall
    clock says the log has been silent for idle_close_after_s, event time follows the alerts'
    clock lag behind. d1 (dsp 10:01:00.500, deadline dsp + 5 min) times out as
    no_handshake when the alerts' clock reaches dsp + lag + 5 min lateness + 5 min timeout, d2
    (dsp 10:14:59.999) likewise, and window 10:00 closes when it reaches 10:15 + lag + 10 min.
    The acknowledgement, when the log comes back, revises d1 and the window."""
    core = MetricsCore(MetricsConfig() if lag_min == 30 else MetricsConfig(max_log_lag_ms=lag_min * MIN))
    assert core.config.max_log_lag_ms == lag_min * MIN
    lag = lag_min * MIN
    run(core, tick("10:00:00.000"))
    assert run(core, exp("d1", "10:01:00.500"), exp("d2", "10:14:59.999")) == Output()

    wall = 1_000_000_000

    def alerts_clock(ms: int) -> Output:
        """A new expectation (of a later window) moving the alerts' clock to ms, then the
        service's wall-clock call: inputs are flowing, the delivery log silent for a minute."""
        first = run(core, exp(f"x{ms}", hms(ms)))
        then = core.on_wall_clock(wall, wall, wall - 60_000)
        return Output(records=first.records + then.records, closed=first.closed + then.closed)

    d1_due = at("10:01:00.500") + lag + 10 * MIN  # 10:41:00.500 with the default 30 minutes
    assert alerts_clock(d1_due - 1) == Output()
    out = alerts_clock(d1_due)
    assert [(r.delivery_id, r.revision, r.status, r.delivery_attempts) for r in out.records] == [
        ("d1", 1, "no_handshake", 0)]
    assert out.closed == []
    assert core.stats().event_time == format_iso(d1_due - lag)
    out = alerts_clock(at("10:14:59.999") + lag + 10 * MIN)
    assert [(r.delivery_id, r.status) for r in out.records] == [("d2", "no_handshake")] and out.closed == []

    close_at = at("10:15:00.000") + lag + 10 * MIN  # 10:55 with the default 30 minutes
    assert alerts_clock(close_at - 1) == Output()
    out = alerts_clock(close_at)
    assert out.records == []
    [closed] = out.closed
    assert (closed.report.window_start[11:16], closed.report.revision) == ("10:00", 1)
    assert counts(row(closed.report)) == {**ZERO, "alerts": 2, "no_handshake": 2}
    assert [(r.delivery_id, r.status) for r in closed.records] == [("d1", "no_handshake"), ("d2", "no_handshake")]

    out = run(core, att("d1", "10:01:00.540", "10:01:01.240"))  # the log comes back
    assert [(r.delivery_id, r.revision, r.status) for r in out.records] == [("d1", 2, "complete")]
    [rev] = out.closed
    assert rev.report.revision == 2
    assert counts(row(rev.report)) == {**ZERO, "alerts": 2, "complete": 1, "no_handshake": 1}


def test_a_clock_tick_moves_both_clocks() -> None:
    core = MetricsCore()
    run(core, tick("10:00:00.000"), exp("d1", "10:20:00.000"))
    assert core.stats().event_time == "2023-06-01T10:00:00.000Z"  # the log's clock (10:00) holds it
    # the tick moves the delivery log's clock: event time 10:25, watermark 10:20, window 10:00 closes
    out = run(core, tick("10:25:00.000"))
    assert (core.stats().event_time, core.stats().watermark) == ("2023-06-01T10:25:00.000Z",
                                                                 "2023-06-01T10:20:00.000Z")
    assert out.records == []
    assert [(c.report.window_start[11:16], c.records) for c in out.closed] == [("10:00", [])]
    # the delivery log alone moves on (an attempt never expected): the alerts' clock holds event time
    assert run(core, att("ghost", "10:40:00.000", "10:40:00.500")) == Output()
    assert core.stats().event_time == "2023-06-01T10:25:00.000Z"
    # the tick moves the alerts' clock too: event time 10:45, watermark 10:40, so d1 (deadline
    # 10:25) times out and window 10:15 (closes at 10:35) closes; the ghost's deadline 10:45 is not due
    out = run(core, tick("10:45:00.000"))
    assert core.stats().event_time == "2023-06-01T10:45:00.000Z"
    assert [(r.delivery_id, r.status) for r in out.records] == [("d1", "no_handshake")]
    [closed] = out.closed
    assert closed.report.window_start[11:16] == "10:15"
    assert counts(row(closed.report)) == {**ZERO, "alerts": 1, "no_handshake": 1}
    assert core.pending == 1


def _quiet_after_alerts_ran_ahead() -> MetricsCore:
    """d1 (dsp 10:01:00.500) acknowledged at 10:01:01.240, then d2 at 10:20:00.000 and nothing
    more: the alerts' clock at 10:20, the log's at 10:01:01.240, event time 10:01:01.240."""
    core = MetricsCore()
    run(core, tick("10:00:00.000"), exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", "10:01:01.240"),
        exp("d2", "10:20:00.000"))
    assert core.stats().event_time == "2023-06-01T10:01:01.240Z"
    return core


def test_wall_clock_moves_both_clocks_on_from_the_later_one() -> None:
    """A quiet stream: after idle_close_after_s the wall time elapsed since the last input moves
    both clocks on from the later one (10:20): 5 minutes idle gives event time 10:25 and closes
    window 10:00; d2's deadline (10:25) is not due at watermark 10:20."""
    core = _quiet_after_alerts_ran_ahead()
    wall = 1_700_000_000_000
    assert not core.on_wall_clock(wall + 29_999, wall)  # not idle long enough
    out = core.on_wall_clock(wall + 5 * MIN, wall)
    assert core.stats().event_time == "2023-06-01T10:25:00.000Z"
    assert out.records == []
    [closed] = out.closed
    assert closed.report.window_start[11:16] == "10:00"
    assert counts(row(closed.report)) == {**ZERO, "alerts": 1, "complete": 1}


def test_wall_clock_asked_every_second_moves_event_time_by_the_idle_time_only() -> None:
    """The service asks every second with the wall time of the last input: event time is always
    10:20 (the later clock at that input) + the idle time, however often it is asked. Window
    10:00 closes at 5 minutes idle, d2 times out at 10 (event time 10:30, watermark 10:25)."""
    core = _quiet_after_alerts_ran_ahead()
    wall = 1_700_000_000_000
    closed: list[tuple[int, str]] = []
    records: list[tuple[int, str, str]] = []
    for second in range(1, 10 * 60 + 1):
        out = core.on_wall_clock(wall + second * 1000, wall)
        closed += [(second, c.report.window_start[11:16]) for c in out.closed]
        records += [(second, r.delivery_id, r.status) for r in out.records]
    assert closed == [(300, "10:00")]
    assert records == [(600, "d2", "no_handshake")]
    assert core.stats().event_time == "2023-06-01T10:30:00.000Z"


# -------------------------------------------------------------------- determinism


def _encoded(outputs: list[Output]) -> bytes:
    return encoder.encode([[o.records, o.closed] for o in outputs])


def _flat(outputs: list[Output]) -> bytes:
    return encoder.encode([[r for o in outputs for r in o.records], [c for o in outputs for c in o.closed]])


def test_same_input_same_bytes_whatever_the_batching() -> None:
    events = synthetic_events(3_000, span_ms=4 * 3_600_000)
    one = MetricsCore()
    a = [one.apply(events[i : i + 100]) for i in range(0, len(events), 100)]
    two = MetricsCore()
    b = [two.apply(events[i : i + 100]) for i in range(0, len(events), 100)]
    assert _encoded(a) == _encoded(b)
    three = MetricsCore()
    three.join.compact_every = 7  # compaction changes memory, never outputs
    c = [three.apply([e]) for e in events]
    assert _flat(a) == _flat(c)
    assert sum(len(o.closed) for o in a) >= 14


def _final(events: list[object], compact_every: int | None = None) -> tuple[dict[str, bytes], dict[str, bytes]]:
    core = MetricsCore()
    if compact_every:
        core.join.compact_every = compact_every  # pending expectations packed: memory only, never outputs
    records: dict[str, AstRecord] = {}
    reports: dict[str, WindowReport] = {}
    for event in events:
        out = core.apply([event])
        for r in out.records:
            records[r.delivery_id] = r
        for c in out.closed:
            reports[c.report.window_start] = c.report
    return ({k: encoder.encode(msgspec.structs.replace(v, revision=0)) for k, v in records.items()},
            {k: encoder.encode(msgspec.structs.replace(v, revision=0)) for k, v in reports.items()})


FIXED = [
    exp("a", "10:01:00.500"), att("a", "10:01:00.540", "10:01:01.240"),
    exp("b", "10:03:00.000", chf=None), att("b", "10:03:00.100", outcome="failed"),
    att("b", "10:03:30.000", "10:03:30.500"),
    exp("c", "10:14:59.000"),  # never acknowledged
    exp("d", "10:16:00.000", region="south", category="dcc_alert", dcc="N53"),
    att("d", "10:16:00.050", "10:16:00.300"),
    att("ghost", "10:20:00.000", "10:20:00.500"),  # never expected
    exp("e", "10:21:00.000", csp_sent="+20", csp_received="+20"), att("e", "10:21:00.010", "10:21:00.090"),
    ServiceResponseSeen(event_id="sr", response_id="x", region="central", cra_flag="02", message_code="0x0001",
                        dsp_received=at("10:05:00.000")),
    RejectedInput(event_id="rj", stage="hub-capture", reason="bad_json", message="bad", subject=s.IN_CSP_NORTH,
                  dsp_received=at("10:22:00.000")),
    tick("11:10:00.000"),
]


def test_fixed_set_reference() -> None:
    records, reports = _final(FIXED)
    assert sorted(records) == ["a", "b", "c", "d", "e"]
    assert sorted(k[11:16] for k in reports) == ["10:00", "10:15", "10:30", "10:45"]
    decoded = {k: msgspec.json.decode(v, type=AstRecord) for k, v in records.items()}
    assert decoded["c"].status == "no_handshake" and decoded["b"].delivery_attempts == 2


@hsettings(max_examples=60, deadline=None)
@given(st.data())
def test_any_order_and_duplication_gives_the_same_final_records_and_reports(data: st.DataObject) -> None:
    reference = _final(FIXED)
    events = list(FIXED)
    extra = data.draw(st.lists(st.sampled_from(FIXED), max_size=8))
    shuffled = data.draw(st.permutations(events + extra))
    assert _final(shuffled, data.draw(st.sampled_from([None, 1, 3]))) == reference


# ------------------------------------------------------------------------ sketches


@hsettings(max_examples=80, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5_000_000), min_size=1, max_size=400))
def test_sketch_quantiles_are_ddsketch_quantiles(values: list[int]) -> None:
    sketcher = Sketcher(MetricsConfig().sketch_relative_accuracy)
    summary = sketcher.summarise(values)
    sketch = sketcher.stats(summary).sketch
    dd = DDSketch(0.01)
    for v in values:
        dd.add(v)
    qs = [0.0, 0.5, 0.9, 0.95, 0.99, 1.0]
    expected = [float(dd.get_quantile_value(q)) for q in qs]
    assert sketch_quantiles(sketch, qs) == expected
    assert [float(ddsketch_of(sketch).get_quantile_value(q)) for q in qs] == expected


def test_merge_reports_equals_a_sketch_of_all_values() -> None:
    rng = random.Random(3)
    core = MetricsCore()
    events: list[object] = []
    values: list[int] = []
    for i in range(300):  # over 3 windows (10:00, 10:15, 10:30)
        dsp = at("10:00:00.000") + i * 9_000
        e2e = rng.randint(200, 20_000)
        e = exp(f"m{i:03d}", format_iso(dsp)[11:23])
        events += [e, DeliveryAttempted(event_id=f"a{i}", delivery_id=e.delivery_id, response_id=e.response_id,
                                        dcc_alert_code=None, service_user_id=SUPPLIER, su_passed=dsp + 10,
                                        su_acknowledged=e.chf_received + e2e, outcome="acknowledged")]  # type: ignore[operator]
        values.append(e2e)
    events.append(tick("11:30:00.000"))
    reports = [c.report for c in core.apply(events).closed]
    assert len(reports) == 5
    rolled = merge_reports(reports + reports[:1])  # a repeated revision is used once
    assert rolled.windows == 5
    assert (rolled.period_start, rolled.period_end) == ("2023-06-01T10:00:00.000Z", "2023-06-01T11:15:00.000Z")
    leg = row(rolled).legs["end_to_end_ms"]
    dd = DDSketch(0.01)
    for v in values:
        dd.add(v)
    assert leg.count == 300 and leg.sum == sum(values) and (leg.min, leg.max) == (min(values), max(values))
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
        assert getattr(leg, name) == dd.get_quantile_value(q)
    assert row(rolled).alerts == 300 and row(rolled, "north").complete == 300
    ordered = sorted(values)
    assert abs(leg.p99 - ordered[int(0.99 * 299)]) <= 0.01 * ordered[int(0.99 * 299)]  # type: ignore[operator]


def test_merge_refuses_different_accuracies() -> None:
    a = MetricsCore(MetricsConfig(sketch_relative_accuracy=0.01)).apply([tick("10:00:00.000"), tick("10:25:00.000")])
    b = MetricsCore(MetricsConfig(sketch_relative_accuracy=0.02)).apply([tick("10:15:00.000"), tick("10:40:00.000")])
    with pytest.raises(ValueError):
        merge_reports([a.closed[0].report, b.closed[0].report])


def test_report_json_round_trip() -> None:
    core = MetricsCore()
    run(core, exp("d1", "10:01:00.500"), att("d1", "10:01:00.540", "10:01:01.240"))
    [closed] = run(core, tick("10:25:00.000")).closed
    text = encoder.encode(closed.report)
    assert msgspec.json.decode(text, type=WindowReport) == closed.report
    sketch = row(closed.report).legs["end_to_end_ms"].sketch
    assert isinstance(sketch, SketchBins) and sum(sketch.bins.values()) == 1


@hsettings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_fast_iso_matches_format_iso(ms: int) -> None:
    assert fast_iso(ms) == format_iso(ms)

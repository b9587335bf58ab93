"""The day's percentiles merged from the 15-minute sketches stay within the stated bound of
the exact values computed from the AST records (the check `make demo` prints)."""

from __future__ import annotations

import json
from pathlib import Path

from alert_timing.simulator.traffic import TrafficConfig, generate, service_user_answers
from alert_timing.sketch_check import compare
from services.csp_enrichment.core import enrich
from services.dsp_mapping.core import deliveries, delivery_attempt
from services.hub_capture.core import capture
from services.metrics.core import MetricsCore
from services.metrics.files import write_window
from services.runtime.service import Inbound
from shared import subjects as s
from shared.dcc_rules import RuleTable
from shared.events import AlertEnriched, ClockTick
from shared.settings import Settings


def test_merged_sketch_percentiles_within_bound_of_exact(tmp_path: Path) -> None:
    rules, settings = RuleTable.load(None), Settings()
    traffic = generate(TrafficConfig(alerts=1500, seed=3, span_ms=6 * 3_600_000), rules)
    expected, attempts = [], []
    for i in traffic.inputs:
        alert = enrich(capture(Inbound(i.subject, i.data, i.headers, 1, 0), settings))
        if isinstance(alert, AlertEnriched):
            expected.extend(deliveries(alert, rules)[0])
    for e in expected:
        for line in service_user_answers(e.delivery_id, e.response_id, e.dcc_alert_code, e.service_user_id,
                                         e.dsp_received, 3):
            attempts.append(delivery_attempt(Inbound(s.IN_DSP_DELIVERY, line.data, {}, 1, 0), settings))
    core = MetricsCore()
    last = max(e.dsp_received for e in expected)
    output = core.apply([*expected, *attempts, ClockTick(event_id="end", time=last + 3_600_000)])
    for closed in output.closed:
        write_window(tmp_path, closed)
    rows = compare(tmp_path)
    assert {r["leg"] for r in rows} == {"hub_to_csp_ms", "csp_to_dsp_ms", "dsp_to_su_ms", "su_handshake_ms",
                                         "end_to_end_ms"}
    assert all(r["within"] for r in rows), [r for r in rows if not r["within"]]
    # the exact side counts every delivery with a non-negative dsp_to_su leg: all of them here
    dsp_to_su = next(r for r in rows if r["leg"] == "dsp_to_su_ms")
    assert dsp_to_su["count"] == len(expected)


def test_throttled_deliveries_stay_out_of_both_sides(tmp_path: Path) -> None:
    """A throttled delivery keeps its CSP and DSP points (so a csp_to_dsp leg) but is kept out of
    every leg's sketch; the exact side must leave it out too (as `make demo`'s check does)."""
    rules, settings = RuleTable.load(None), Settings()
    traffic = generate(TrafficConfig(alerts=800, seed=5, span_ms=3 * 3_600_000), rules)
    expected = []
    for i in traffic.inputs:
        alert = enrich(capture(Inbound(i.subject, i.data, i.headers, 1, 0), settings))
        if isinstance(alert, AlertEnriched):
            expected.extend(deliveries(alert, rules)[0])
    throttled = expected[::3]
    attempts = []
    for e in expected:
        if e in throttled:
            line = json.dumps({"deliveryId": e.delivery_id, "responseId": e.response_id,
                               "dccAlertCode": e.dcc_alert_code, "serviceUserId": e.service_user_id,
                               "suPassedTimestamp": None, "suAcknowledgedTimestamp": None,
                               "outcome": "throttled"}).encode()
            attempts.append(delivery_attempt(Inbound(s.IN_DSP_DELIVERY, line, {}, 1, 0), settings))
            continue
        for answer in service_user_answers(e.delivery_id, e.response_id, e.dcc_alert_code, e.service_user_id,
                                           e.dsp_received, 3):
            attempts.append(delivery_attempt(Inbound(s.IN_DSP_DELIVERY, answer.data, {}, 1, 0), settings))
    core = MetricsCore()
    last = max(e.dsp_received for e in expected)
    output = core.apply([*expected, *attempts, ClockTick(event_id="end", time=last + 3_600_000)])
    assert sum(r.status == "throttled" for r in output.records) >= len(throttled)
    for closed in output.closed:
        write_window(tmp_path, closed)
    rows = compare(tmp_path)
    assert all(r["within"] for r in rows), [r for r in rows if not r["within"]]
    csp_to_dsp = next(r for r in rows if r["leg"] == "csp_to_dsp_ms")
    assert csp_to_dsp["count"] <= len(expected) - len(throttled)

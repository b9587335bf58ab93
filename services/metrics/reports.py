"""Report aggregation: a closed window's report rows and leg statistics from its records (pure)."""

from __future__ import annotations

from collections import Counter

from services.metrics.model import ClosedWindow, Window
from shared.events import FLAG_CLOCK_SKEW, LEGS, AstRecord, ReportRow, WindowReport
from shared.sketches import ALL, LegSummary, Sketcher, merge_summaries
from shared.timefmt import format_iso

__all__ = ["closed_window", "window_report"]

#: Per (region, category): the counts (alerts, complete, no_handshake, incomplete,
#: missing_hub_timestamp, clock_skew, throttled) and one summary per leg, in ``LEGS`` order.
_Summary = dict[tuple[str, str], tuple[list[int], list[LegSummary]]]


def closed_window(w: Window, window_ms: int, sketcher: Sketcher) -> ClosedWindow:
    """Window ``w`` as published: its report (revision ``w.revision``) and its records sorted
    by delivery_id."""
    records = [w.records[k] for k in sorted(w.records)]
    report = window_report(w, records, window_ms, sketcher)
    return ClosedWindow(report=report, records=records, start_ms=w.start, end_ms=w.start + window_ms)


def _group_summary(g: list[AstRecord], sketcher: Sketcher) -> tuple[list[int], list[LegSummary]]:
    """Counts and leg summaries of the records of one (region, category)."""
    summarise = sketcher.summarise
    statuses = Counter([r.status for r in g])
    counts = [
        len(g),
        statuses["complete"],
        statuses["no_handshake"],
        statuses["incomplete"],
        [r.chf_received for r in g].count(None),
        sum([FLAG_CLOCK_SKEW in r.flags for r in g]),
        statuses["throttled"],
    ]
    if counts[-1]:  # throttled deliveries are in no leg's statistics
        g = [r for r in g if r.status != "throttled"]
    legs = [
        summarise([v for v in [r.hub_to_csp_ms for r in g] if v is not None and v >= 0]),
        summarise([v for v in [r.csp_to_dsp_ms for r in g] if v is not None and v >= 0]),
        summarise([v for v in [r.dsp_to_su_ms for r in g] if v is not None and v >= 0]),
        summarise([v for v in [r.su_handshake_ms for r in g] if v is not None and v >= 0]),
        summarise([v for v in [r.end_to_end_ms for r in g] if v is not None and v >= 0]),
    ]
    return counts, legs


def window_report(w: Window, records: list[AstRecord], window_ms: int, sketcher: Sketcher) -> WindowReport:
    """The report of window ``w`` over ``records``: ("all", "all") first, then for each region
    (region, "all") and (region, category) for each category present."""
    groups: dict[tuple[str, str], list[AstRecord]] = {}
    for r in records:
        region_category = (r.region, r.category)
        g = groups.get(region_category)
        if g is None:
            groups[region_category] = [r]
        else:
            g.append(r)
    summary: _Summary = {key: _group_summary(g, sketcher) for key, g in groups.items()}
    regions = sorted({k[0] for k in groups} | {r for r in w.responses if r} | {r for r in w.rejected if r})
    rows = [_row(ALL, ALL, sorted(groups), summary, sketcher, len(w.without_alert),
                 sum(w.responses.values()), sum(w.rejected.values()))]
    for region in regions:
        keys = sorted(k for k in groups if k[0] == region)
        rows.append(_row(region, ALL, keys, summary, sketcher, 0,
                         w.responses.get(region, 0), w.rejected.get(region, 0)))
        for group in keys:
            rows.append(_row(region, group[1], [group], summary, sketcher, 0, 0, 0))
    return WindowReport(
        window_start=format_iso(w.start),
        window_end=format_iso(w.start + window_ms),
        revision=w.revision,
        sketch_relative_accuracy=sketcher.relative_accuracy,
        rows=rows,
    )


def _row(region: str, category: str, keys: list[tuple[str, str]], summary: _Summary, sketcher: Sketcher,
         without_alert: int, responses: int, rejected: int) -> ReportRow:
    """One report row: the groups ``keys`` added up, plus the window-level counts given."""
    totals = [0, 0, 0, 0, 0, 0, 0]
    for key in keys:
        for i, n in enumerate(summary[key][0]):
            totals[i] += n
    alerts, complete, no_handshake, incomplete, missing, skew, throttled = totals
    stats = sketcher.stats
    legs = {
        name: stats(merge_summaries([summary[key][1][i] for key in keys]) if keys else (0, 0, {}, None, None, 0))
        for i, name in enumerate(LEGS)
    }
    return ReportRow(
        region=region,
        category=category,
        alerts=alerts + without_alert,
        complete=complete,
        no_handshake=no_handshake,
        incomplete=incomplete + without_alert,
        throttled=throttled,
        missing_hub_timestamp=missing,
        clock_skew=skew,
        delivery_without_alert=without_alert,
        service_responses_seen=responses,
        rejected=rejected,
        legs=legs,
    )

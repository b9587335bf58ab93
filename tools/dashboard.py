"""The SECMP0122 Q&A dashboard: one self-contained ``index.html`` (plotly.js and data inlined,
opens from disk with no network).

Charts: end-to-end and per-leg latency distributions; p50/p95/p99 per 15-minute interval;
volume per interval (outage storms stand out); breakdowns by region, category, alert code
and DCC alert code; completeness per day (missing HubTimestamp, no handshake, clock skew,
rejected); the operational metrics (share within target per leg, owner and region) and the
worst 15-minute windows; who: the slowest Service Users (handshake p50 / p95 / p99 against the
target) and the worst Comms Hubs (Comms Hub -> CSP leg, missing HubTimestamp, clock skew), each
with a one-line reading. Distributions are drawn as step outlines that drop to zero over
empty bins. Input: the report tables as ``{table: {column: [values]}}`` (see
``alert_timing.report``).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from shared.events import LEGS

__all__ = ["CHARTS", "SERVICE_USERS_SHOWN", "WORST_HUBS_SHOWN", "build_dashboard", "service_user_reading",
           "step_outline", "worst_hubs_reading"]

LEG_TITLES = {
    "hub_to_csp_ms": "Comms Hub → CSP out",
    "csp_to_dsp_ms": "CSP → DSP transit",
    "dsp_to_su_ms": "DSP processing (→ Service User)",
    "su_handshake_ms": "Service User handshake",
    "end_to_end_ms": "End to end",
}
COLOURS = {"p50": "#2a9d8f", "p95": "#e9a23b", "p99": "#d1495b"}
PALETTE = ["#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51", "#8d99ae", "#6d597a"]

#: Chart ids in page order (the browser test checks each one drew).
CHARTS = (
    "e2e-distribution",
    "leg-distributions",
    "percentiles-over-time",
    "volume",
    "region-category",
    "alert-codes",
    "dcc-alert-codes",
    "completeness",
    "operational-metrics",
    "worst-windows",
    "slowest-service-users",
    "worst-hubs",
)
#: How many rows of by_service_user.csv and worst_hubs.csv the page shows (the CSVs hold them all).
SERVICE_USERS_SHOWN = 15
WORST_HUBS_SHOWN = 25

_LAYOUT = dict(
    template="plotly_white",
    margin=dict(l=60, r=30, t=60, b=50),
    height=420,
    font=dict(family="Segoe UI, Helvetica, Arial, sans-serif", size=13),
    legend=dict(orientation="h", y=-0.18),
)


def _col(data: dict[str, dict[str, list[Any]]], table: str, column: str) -> list[Any]:
    return list(data.get(table, {}).get(column, []))


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _histogram(data: dict[str, dict[str, list[Any]]], leg: str) -> tuple[list[float], list[float], list[int]]:
    legs = _col(data, "latency_histogram", "leg")
    lo = _col(data, "latency_histogram", "ms_from")
    hi = _col(data, "latency_histogram", "ms_to")
    n = _col(data, "latency_histogram", "count")
    rows = sorted((float(a), float(b), int(c)) for g, a, b, c in zip(legs, lo, hi, n, strict=True) if g == leg)
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def step_outline(lo: list[float], hi: list[float], values: list[float],
                 floor: float = 0.5) -> tuple[list[float], list[float]]:
    """The step outline of histogram bins [lo, hi) -> value, for a line on a log axis: each bin
    is a flat top from ``max(lo, floor)`` to ``hi``; the line starts and ends at zero and drops
    to zero over every gap between bins (an empty bin), instead of running straight across."""
    xs: list[float] = []
    ys: list[float] = []
    previous_hi: float | None = None
    for a, b, value in zip(lo, hi, values, strict=True):
        start = max(a, floor)
        if previous_hi is None:
            xs.append(start)
            ys.append(0.0)
        elif start > previous_hi * (1 + 1e-9):  # a gap: empty bins between
            xs += [previous_hi, start]
            ys += [0.0, 0.0]
        xs += [start, b]
        ys += [float(value), float(value)]
        previous_hi = b
    if previous_hi is not None:
        xs.append(previous_hi)
        ys.append(0.0)
    return xs, ys


def _distribution_figure(data: dict[str, dict[str, list[Any]]]) -> go.Figure:
    lo, hi, n = _histogram(data, "end_to_end_ms")
    total = sum(n) or 1
    cumulative, running = [], 0
    for c in n:
        running += c
        cumulative.append(100.0 * running / total)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    xs, ys = step_outline(lo, hi, [float(c) for c in n])  # bars vanish on a log axis
    fig.add_trace(go.Scatter(x=xs, y=ys, name="alerts per bin", mode="lines", fill="tozeroy",
                             line=dict(color="#264653", width=1), fillcolor="rgba(38,70,83,0.55)",
                             hovertemplate="%{x:.0f} ms: %{y:,} alerts in the bin<extra></extra>"),
                  secondary_y=False)
    fig.add_trace(go.Scatter(x=[b for b in hi], y=cumulative, name="cumulative %", mode="lines",
                             line=dict(color="#d1495b", width=2),
                             hovertemplate="≤ %{x:.0f} ms: %{y:.2f} %<extra></extra>"), secondary_y=True)
    summary = data.get("summary", {})
    for name in ("p50", "p95", "p99"):
        value = _num((summary.get(f"end_to_end_ms_{name}") or [None])[0])
        if value and value > 0:
            fig.add_vline(x=value, line=dict(color=COLOURS[name], dash="dash"),
                          annotation_text=f"{name} {value:,.0f} ms", annotation_position="top")
    fig.update_layout(title="End-to-end latency (Comms Hub → Service User handshake)", bargap=0.05, **_LAYOUT)
    fig.update_xaxes(type="log", title="milliseconds (log scale)")
    fig.update_yaxes(title="alerts", secondary_y=False)
    fig.update_yaxes(title="cumulative %", range=[0, 100], secondary_y=True, showgrid=False)
    return fig


def _legs_figure(data: dict[str, dict[str, list[Any]]]) -> go.Figure:
    fig = go.Figure()
    for i, leg in enumerate(LEGS):
        lo, hi, n = _histogram(data, leg)
        if not n:
            continue
        total = sum(n)
        xs, ys = step_outline(lo, hi, [100.0 * c / total for c in n])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=LEG_TITLES[leg],
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2),
                                 hovertemplate="%{x:.0f} ms: %{y:.2f} % of the leg<extra>" + leg + "</extra>"))
    fig.update_layout(title="Latency distribution of each leg (share of alerts per bin)", **_LAYOUT)
    fig.update_xaxes(type="log", title="milliseconds (log scale)")
    fig.update_yaxes(title="% of alerts", rangemode="tozero")
    return fig


def _percentiles_figure(data: dict[str, dict[str, list[Any]]]) -> go.Figure:
    x = _col(data, "by_interval", "interval_start")
    fig = go.Figure()
    buttons = []
    n_per_leg = 3
    for i, leg in enumerate(LEGS):
        for name in ("p50", "p95", "p99"):
            y = [_num(v) for v in _col(data, "by_interval", f"{leg}_{name}")]
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, visible=leg == "end_to_end_ms",
                                     line=dict(color=COLOURS[name], width=1.5 if name != "p99" else 1),
                                     connectgaps=False,
                                     hovertemplate="%{x}<br>" + name + " %{y:,.0f} ms<extra>" + leg + "</extra>"))
        visible = [j // n_per_leg == i for j in range(len(LEGS) * n_per_leg)]
        buttons.append(dict(label=LEG_TITLES[leg], method="update",
                            args=[{"visible": visible},
                                  {"title.text": f"{LEG_TITLES[leg]}: p50 / p95 / p99 per 15-minute interval"}]))
    fig.update_layout(title="End to end: p50 / p95 / p99 per 15-minute interval",
                      updatemenus=[dict(type="dropdown", buttons=buttons, x=1.0, xanchor="right", y=1.15,
                                        active=LEGS.index("end_to_end_ms"))],
                      **_LAYOUT)
    fig.update_yaxes(title="milliseconds", rangemode="tozero")
    fig.update_xaxes(title="interval start (UTC)")
    return fig


def _volume_figure(data: dict[str, dict[str, list[Any]]]) -> go.Figure:
    x = _col(data, "by_interval", "interval_start")
    alerts = [int(v or 0) for v in _col(data, "by_interval", "alerts")]
    no_hs = [int(v or 0) for v in _col(data, "by_interval", "no_handshake")]
    throttled = [int(v or 0) for v in _col(data, "by_interval", "throttled")] or [0] * len(alerts)
    rejected = [int(v or 0) for v in _col(data, "by_interval", "rejected")]
    delivered = [a - b - c for a, b, c in zip(alerts, no_hs, throttled, strict=True)]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=delivered, name="acknowledged or incomplete", mode="lines", stackgroup="a",
                             line=dict(color="#2a9d8f", width=1)))
    fig.add_trace(go.Scatter(x=x, y=no_hs, name="no handshake", mode="lines", stackgroup="a",
                             line=dict(color="#d1495b", width=1)))
    fig.add_trace(go.Scatter(x=x, y=throttled, name="throttled (storm protection)", mode="lines", stackgroup="a",
                             line=dict(color="#e9c46a", width=1)))
    fig.add_trace(go.Scatter(x=x, y=rejected, name="rejected inputs", mode="lines", line=dict(color="#6d597a")))
    fig.update_layout(title="Alerts per 15-minute interval (storms, e.g. supply outages, stand out)",
                      hovermode="x unified", **_LAYOUT)
    fig.update_yaxes(title="alerts per interval")
    fig.update_xaxes(title="interval start (UTC)")
    return fig


def _bars(fig: go.Figure, labels: list[str], table: str, data: dict[str, dict[str, list[Any]]],
          row: int, col: int, show_legend: bool) -> None:
    counts = _col(data, table, "alerts")
    for name in ("p50", "p95", "p99"):
        fig.add_trace(go.Bar(x=labels, y=[_num(v) for v in _col(data, table, f"end_to_end_ms_{name}")],
                             name=f"end to end {name}", marker_color=COLOURS[name], showlegend=show_legend,
                             customdata=counts,
                             hovertemplate="%{x}: %{y:,.0f} ms (" + name + ", %{customdata:,} alerts)<extra></extra>"),
                      row=row, col=col)


def _region_category_figure(data: dict[str, dict[str, list[Any]]]) -> go.Figure:
    regions = [str(v) for v in _col(data, "by_region", "region")]
    categories = [str(v) for v in _col(data, "by_category", "category")]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("by region (CSP)", "by category"))
    _bars(fig, [f"{r}<br>{n:,} alerts" for r, n in zip(regions, _col(data, "by_region", "alerts"), strict=True)],
          "by_region", data, 1, 1, True)
    _bars(fig, [f"{c}<br>{n:,} alerts" for c, n in zip(categories, _col(data, "by_category", "alerts"), strict=True)],
          "by_category", data, 1, 2, False)
    layout = dict(_LAYOUT)
    layout["margin"] = dict(l=60, r=30, t=90, b=60)
    fig.update_layout(title="End-to-end latency by region and category", barmode="group", **layout)
    fig.update_xaxes(tickangle=0)
    fig.update_yaxes(title="milliseconds", row=1, col=1)
    return fig


def _codes_figure(data: dict[str, dict[str, list[Any]]], table: str, key: str, title: str,
                  named: bool) -> go.Figure:
    codes = [str(v) for v in _col(data, table, key)]
    names = _col(data, table, "alert_name") if named else [None] * len(codes)
    counts = [int(v or 0) for v in _col(data, table, "alerts")]
    p95 = [_num(v) for v in _col(data, table, "end_to_end_ms_p95")]
    rows = sorted(zip(counts, codes, names, p95, strict=True), key=lambda r: (-r[0], r[1]))[:25]
    rows.reverse()
    labels = [f"{c} {n}"[:60] if n else c for _, c, n, _ in rows]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.6, 0.4],
                        subplot_titles=("alerts", "end-to-end p95 (ms)"))
    fig.add_trace(go.Bar(y=labels, x=[r[0] for r in rows], orientation="h", marker_color="#264653",
                         name="alerts", hovertemplate="%{y}: %{x:,} alerts<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(y=labels, x=[r[3] for r in rows], orientation="h", marker_color="#e9a23b",
                         name="p95", hovertemplate="%{y}: p95 %{x:,.0f} ms<extra></extra>"), row=1, col=2)
    layout = dict(_LAYOUT)
    layout["height"] = max(320, 60 + 24 * len(rows))
    layout["margin"] = dict(l=320, r=30, t=70, b=40)
    fig.update_layout(title=title, showlegend=False, **layout)
    return fig


def _completeness_figure(data: dict[str, dict[str, list[Any]]]) -> go.Figure:
    days = _col(data, "completeness", "day")
    fig = go.Figure()
    series = (("missing_hub_timestamp", "missing HubTimestamp", "#e9c46a"),
              ("no_handshake", "no handshake", "#d1495b"),
              ("incomplete", "incomplete", "#8d99ae"),
              ("throttled", "throttled (storm protection)", "#2a9d8f"),
              ("clock_skew", "clock skew", "#6d597a"),
              ("rejected", "rejected inputs", "#264653"),
              ("delivery_without_alert", "delivery without alert", "#f4a261"))
    for column, label, colour in series:
        fig.add_trace(go.Bar(x=days, y=[int(v or 0) for v in _col(data, "completeness", column)], name=label,
                             marker_color=colour, hovertemplate="%{x}: %{y:,} " + label + "<extra></extra>"))
    fig.update_layout(title="Completeness per day (counts)", barmode="group", **_LAYOUT)
    fig.update_xaxes(type="category")
    fig.update_yaxes(title="count")
    return fig


REGION_ORDER = ("north", "central", "south", "all")
REGION_COLOURS = {"north": "#264653", "central": "#2a9d8f", "south": "#e9a23b", "all": "#8d99ae"}


def _operational_figure(data: dict[str, dict[str, list[Any]]]) -> go.Figure:
    """Share within target per leg (owner and target in the label) and region, all categories."""
    table = data.get("operational_metrics", {})
    rows = list(zip(*(table.get(c, []) for c in ("leg", "owner", "region", "category", "target_ms", "alerts",
                                                  "within_target", "share_within_target")), strict=True))
    rows = [r for r in rows if r[3] == "all"]
    legs = [leg for leg in LEGS if any(r[0] == leg for r in rows)]
    label: dict[str, str] = {}
    for leg, owner, region, _, target, *_ in rows:
        if region == "all":
            target_text = f"≤ {int(target):,} ms" if target is not None else "targets vary"
            label[leg] = f"{LEG_TITLES[leg]}<br>{owner}, {target_text}"
    fig = go.Figure()
    for region in REGION_ORDER:
        by_leg = {r[0]: r for r in rows if r[2] == region}
        if not by_leg:
            continue
        picked = [by_leg.get(leg) for leg in legs]
        fig.add_trace(go.Bar(
            x=[label.get(leg, leg) for leg in legs],
            y=[None if r is None else 100.0 * float(r[7]) for r in picked],
            customdata=[[0, 0] if r is None else [int(r[6]), int(r[5])] for r in picked],
            name=region, marker_color=REGION_COLOURS[region],
            hovertemplate="%{x}<br>" + region + ": %{y:.2f} % within target "
                          "(%{customdata[0]:,} of %{customdata[1]:,})<extra></extra>"))
    layout = dict(_LAYOUT)
    layout["margin"] = dict(l=60, r=30, t=60, b=90)
    fig.update_layout(title="Share of alerts within target, per leg (owner, target) and region", barmode="group",
                      **layout)
    fig.update_yaxes(title="% within target", range=[0, 100])
    return fig


def _worst_windows_figure(data: dict[str, dict[str, list[Any]]]) -> go.Figure:
    """The 15-minute windows and legs with the lowest share within target."""
    table = data.get("operational_worst_windows", {})
    columns = ("interval_start", "leg", "owner", "target_ms", "alerts", "within_target", "share_within_target")
    rows = list(zip(*(table.get(c, []) for c in columns), strict=True))
    cells = [
        [str(r[0]) for r in rows],
        [LEG_TITLES.get(str(r[1]), str(r[1])) for r in rows],
        [str(r[2]) for r in rows],
        ["varies" if r[3] is None else f"{int(r[3]):,}" for r in rows],
        [f"{int(r[4]):,}" for r in rows],
        [f"{int(r[4]) - int(r[5]):,}" for r in rows],
        [f"{100.0 * float(r[6]):.2f} %" for r in rows],
    ]
    fig = go.Figure(go.Table(
        header=dict(values=["window start (UTC)", "leg", "owner", "target (ms)", "alerts", "outside target",
                            "within target"], fill_color="#1d3557", font=dict(color="white"), align="left"),
        cells=dict(values=cells, align="left", fill_color="#f3f6f8"),
        columnwidth=[1.9, 2.2, 1.2, 1.0, 0.8, 1.0, 1.0],
    ))
    layout = dict(_LAYOUT)
    layout["height"] = 120 + 28 * max(len(rows), 1)
    layout["margin"] = dict(l=20, r=20, t=60, b=20)
    fig.update_layout(title="Worst 15-minute windows (lowest share within target)", **layout)
    return fig


def _table_rows(data: dict[str, dict[str, list[Any]]], table: str, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    held = data.get(table, {})
    return list(zip(*(held.get(c, []) for c in columns), strict=True))


_SU_COLUMNS = ("service_user_id", "alerts", "su_handshake_p50_ms", "su_handshake_p95_ms", "su_handshake_p99_ms",
               "share_within_target")
_HUB_COLUMNS = ("rank", "comms_hub_id", "region", "alerts", "hub_to_csp_p50_ms", "hub_to_csp_p95_ms",
                "missing_hub_timestamp", "clock_skew")


def service_user_reading(data: dict[str, dict[str, list[Any]]], target_ms: int | None) -> str:
    """One line on ``by_service_user``: the slowest Service User and how many are over the target."""
    rows = [r for r in _table_rows(data, "by_service_user", _SU_COLUMNS) if _num(r[3]) is not None]
    if not rows:
        return "No Service User acknowledged an alert in the period: no handshake to compare."
    su, alerts, _, p95, _, share = rows[0]
    text = f"Slowest Service User: {su}, handshake p95 {_num(p95):,.0f} ms over {int(alerts):,} alerts"
    if target_ms is None:
        return text + f"; {len(rows)} Service Users in all (no handshake target set)."
    if _num(share) is not None:
        text += f", {100.0 * float(share):.1f} % within target"
    over = sum(1 for r in rows if (_num(r[3]) or 0.0) > target_ms)
    return text + f"; {over} of {len(rows)} Service Users have a handshake p95 above the {target_ms:,} ms target."


def worst_hubs_reading(data: dict[str, dict[str, list[Any]]]) -> str:
    """One line on ``worst_hubs``: the worst hub and how many of those listed lack HubTimestamps or skew."""
    rows = _table_rows(data, "worst_hubs", _HUB_COLUMNS)
    if not rows:
        return "No Comms Hub had enough alerts in the period to be ranked (--min-alerts)."
    _, hub, region, alerts, _, p95, _, _ = rows[0]
    leg = "no measured leg" if _num(p95) is None else f"Comms Hub → CSP p95 {_num(p95):,.0f} ms"
    missing = sum(1 for r in rows if int(r[6] or 0))
    skewed = sum(1 for r in rows if int(r[7] or 0))
    return (f"Worst Comms Hub: {hub} ({region}), {leg} over {int(alerts):,} alerts; of the {len(rows)} hubs "
            f"listed, {missing} sent alerts without HubTimestamp and {skewed} showed clock skew.")


def _service_users_figure(data: dict[str, dict[str, list[Any]]], target_ms: int | None,
                          target_varies: bool) -> go.Figure:
    """Bars of handshake p50 / p95 / p99 of the slowest Service Users, the target as a line."""
    rows = _table_rows(data, "by_service_user", _SU_COLUMNS)[:SERVICE_USERS_SHOWN]
    labels = [f"{r[0] if r[0] is not None else 'unknown'}<br>{int(r[1]):,} alerts" for r in rows]
    fig = go.Figure()
    for i, name in enumerate(("p50", "p95", "p99"), start=2):
        fig.add_trace(go.Bar(x=labels, y=[_num(r[i]) for r in rows], name=f"handshake {name}",
                             marker_color=COLOURS[name],
                             hovertemplate="%{x}: %{y:,.0f} ms (" + name + ")<extra></extra>"))
    if target_ms is not None:
        note = " (default; varies by region or category)" if target_varies else ""
        fig.add_hline(y=target_ms, line=dict(color="#1d3557", dash="dash"),
                      annotation_text=f"target {target_ms:,} ms{note}", annotation_position="top right")
    layout = dict(_LAYOUT)
    layout["margin"] = dict(l=60, r=30, t=60, b=110)
    fig.update_layout(title=f"Slowest Service Users: handshake p50 / p95 / p99 (top {SERVICE_USERS_SHOWN} by p95)",
                      barmode="group", **layout)
    fig.update_yaxes(title="milliseconds", rangemode="tozero")
    return fig


def _worst_hubs_figure(data: dict[str, dict[str, list[Any]]]) -> go.Figure:
    """The Comms Hubs with the slowest Comms Hub -> CSP leg, with their completeness counts."""
    rows = _table_rows(data, "worst_hubs", _HUB_COLUMNS)[:WORST_HUBS_SHOWN]

    def ms(v: Any) -> str:
        n = _num(v)
        return "–" if n is None else f"{n:,.0f}"

    cells = [[str(r[0]) for r in rows], [str(r[1]) for r in rows], [str(r[2]) for r in rows],
             [f"{int(r[3]):,}" for r in rows], [ms(r[4]) for r in rows], [ms(r[5]) for r in rows],
             [f"{int(r[6] or 0):,}" for r in rows], [f"{int(r[7] or 0):,}" for r in rows]]
    fig = go.Figure(go.Table(
        header=dict(values=["rank", "Comms Hub", "region", "alerts", "hub → CSP p50 (ms)", "hub → CSP p95 (ms)",
                            "missing HubTimestamp", "clock skew"],
                    fill_color="#1d3557", font=dict(color="white"), align="left"),
        cells=dict(values=cells, align="left", fill_color="#f3f6f8"),
        columnwidth=[0.6, 1.4, 0.9, 0.8, 1.2, 1.2, 1.3, 0.9],
    ))
    layout = dict(_LAYOUT)
    layout["height"] = 120 + 28 * max(len(rows), 1)
    layout["margin"] = dict(l=20, r=20, t=60, b=20)
    fig.update_layout(title=f"Worst Comms Hubs: slowest Comms Hub → CSP leg (top {WORST_HUBS_SHOWN})", **layout)
    return fig


def _summary_html(data: dict[str, dict[str, list[Any]]], sat: dict[str, int] | None) -> str:
    s = {k: (v[0] if v else None) for k, v in data.get("summary", {}).items()}

    def n(key: str) -> str:
        v = s.get(key)
        return "–" if v is None else f"{int(v):,}"

    def ms(key: str) -> str:
        v = _num(s.get(key))
        return "–" if v is None else f"{v:,.0f}"

    alerts = int(s.get("alerts") or 0)

    def pct(key: str) -> str:
        return f"{100.0 * int(s.get(key) or 0) / alerts:.2f} %" if alerts else "–"

    tiles = [
        ("alerts", n("alerts")), ("complete", n("complete")),
        ("no handshake", f"{n('no_handshake')} ({pct('no_handshake')})"),
        ("throttled", f"{n('throttled')} ({pct('throttled')})"),
        ("missing HubTimestamp", f"{n('missing_hub_timestamp')} ({pct('missing_hub_timestamp')})"),
        ("clock skew", n("clock_skew")), ("rejected inputs", n("rejected")),
        ("end-to-end p50 / p95 / p99 (ms)",
         f"{ms('end_to_end_ms_p50')} / {ms('end_to_end_ms_p95')} / {ms('end_to_end_ms_p99')}"),
    ]
    cells = "".join(
        f'<div class="tile"><div class="k">{html.escape(k)}</div><div class="v">{html.escape(v)}</div></div>'
        for k, v in tiles)
    rows = "".join(
        f"<tr><td>{html.escape(LEG_TITLES[leg])}</td><td>{n(leg + '_count')}</td><td>{ms(leg + '_p50')}</td>"
        f"<td>{ms(leg + '_p90')}</td><td>{ms(leg + '_p95')}</td><td>{ms(leg + '_p99')}</td>"
        f"<td>{ms(leg + '_max')}</td></tr>"
        for leg in LEGS)
    table = ("<table><thead><tr><th>leg</th><th>count</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th>"
             f"<th>max</th></tr></thead><tbody>{rows}</tbody></table>")
    sat_html = ""
    if sat:
        sat_html = (f'<p class="sat">SAT cross-check: {sat["sat_entries"]:,} SAT entries, '
                    f'{sat["ast_response_ids"]:,} AST response ids; <b>{sat["sat_missing_in_ast"]:,}</b> SAT entries '
                    f'missing in AST, <b>{sat["ast_missing_in_sat"]:,}</b> AST response ids missing in SAT.</p>')
    return f'<section class="summary"><div class="tiles">{cells}</div>{table}{sat_html}</section>'


_CSS = """
body { font-family: "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; background: #f6f7f9; color: #1d2733; }
header { background: #1d3557; color: #fff; padding: 18px 28px; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; }
header p { margin: 4px 0 0; opacity: .85; font-size: 13px; }
main { padding: 18px 28px 40px; max-width: 1500px; margin: auto; }
.summary, .chart { background: #fff; border-radius: 6px; box-shadow: 0 1px 3px rgba(0,0,0,.08);
                   padding: 12px 16px; margin-bottom: 18px; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; margin-bottom: 12px; }
.tile { flex: 1 1 160px; border-left: 4px solid #2a9d8f; padding: 6px 10px; background: #f3f6f8; }
.tile .k { font-size: 12px; color: #55606e; } .tile .v { font-size: 18px; font-weight: 600; }
table { border-collapse: collapse; font-size: 13px; } th, td { padding: 4px 12px; text-align: right; }
th:first-child, td:first-child { text-align: left; } thead th { border-bottom: 1px solid #ccd; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
.grid .chart { margin-bottom: 0; }
footer { font-size: 12px; color: #55606e; margin-top: 18px; }
.operational h2, .drilldown h2 { font-size: 18px; font-weight: 600; margin: 8px 0; }
.reading { font-size: 14px; margin: 6px 0 10px; }
.note { font-size: 13px; color: #8a4b08; background: #fff4e0; padding: 6px 10px; border-radius: 4px; }
@media (max-width: 1100px) { .grid { grid-template-columns: 1fr; } }
@page { size: A4; margin: 12mm; }
@media print {
  body { background: #fff; } main { padding: 0 8px; max-width: none; }
  .grid { grid-template-columns: 1fr; }
  .chart, .summary { box-shadow: none; break-inside: avoid; page-break-inside: avoid; }
  .drilldown { break-before: page; } .reading { break-after: avoid; }
  header { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

_CHECK = """
<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message || e)); });
  function check() {
    var divs = document.querySelectorAll(".plotly-graph-div");
    var drawn = 0;
    divs.forEach(function (d) { if (d.querySelector(".main-svg")) { drawn += 1; } });
    document.body.setAttribute("data-charts", String(divs.length));
    document.body.setAttribute("data-charts-drawn", String(drawn));
    document.body.setAttribute("data-errors", String(errors.length));
    if (errors.length) { document.body.setAttribute("data-error-text", errors.join(" | ")); }
  }
  window.addEventListener("load", function () { setTimeout(check, 300); });
})();
</script>
"""


def build_dashboard(data: dict[str, dict[str, list[Any]]], path: Path, title: str = "Alert throughput timing",
                    sat: dict[str, int] | None = None, targets_note: str = "", handshake_target_ms: int | None = None,
                    handshake_target_varies: bool = False) -> Path:
    """Write the dashboard to ``path`` (one HTML file, nothing fetched at view time).
    ``handshake_target_ms``: the Service User handshake leg's target (the line over the Service
    Users' bars; ``handshake_target_varies``: it is the default of targets set per region or
    category)."""
    figures = {
        "e2e-distribution": _distribution_figure(data),
        "leg-distributions": _legs_figure(data),
        "percentiles-over-time": _percentiles_figure(data),
        "volume": _volume_figure(data),
        "region-category": _region_category_figure(data),
        "alert-codes": _codes_figure(data, "by_alert_code", "alert_code", "Alerts by alert code (top 25)", True),
        "dcc-alert-codes": _codes_figure(data, "by_dcc_alert_code", "dcc_alert_code",
                                         "DCC alerts by DCC alert code", False),
        "completeness": _completeness_figure(data),
        "operational-metrics": _operational_figure(data),
        "worst-windows": _worst_windows_figure(data),
        "slowest-service-users": _service_users_figure(data, handshake_target_ms, handshake_target_varies),
        "worst-hubs": _worst_hubs_figure(data),
    }
    config = {"displaylogo": False, "responsive": True}
    parts = []
    first = True
    for name in CHARTS:
        div = pio.to_html(figures[name], full_html=False, include_plotlyjs=first, div_id=f"chart-{name}",
                          config=config, default_width="100%")
        first = False
        parts.append(f'<div class="chart" id="box-{name}">{div}</div>')
    note = f'<p class="note">{html.escape(targets_note)}</p>' if targets_note else ""
    operational = ('<section class="operational"><h2>Operational metrics: share within target</h2>'
                   f"{note}{parts[8]}{parts[9]}</section>")
    su_reading = html.escape(service_user_reading(data, handshake_target_ms))
    hub_reading = html.escape(worst_hubs_reading(data))
    drilldown = ('<section class="drilldown"><h2>Where the time goes: Service Users and Comms Hubs</h2>'
                 f'<p class="reading" id="reading-service-users">{su_reading}</p>{parts[10]}'
                 f'<p class="reading" id="reading-worst-hubs">{hub_reading}</p>{parts[11]}</section>')
    pairs = [parts[0], parts[1], '<div class="grid">' + parts[4] + parts[6] + "</div>", parts[2], parts[3],
             parts[5], parts[7], operational, drilldown]
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<header><h1>SECMP0122 alert throughput timing: Q&amp;A dashboard</h1><p>{html.escape(title)}</p></header>
<main>
{_summary_html(data, sat)}
{''.join(pairs)}
<footer>Exact statistics over the AST records (latest revision of each alert), by DSP receipt time (UTC).
Percentiles interpolate linearly between the two nearest ranks; negative legs (clock skew) are counted but
left out of percentiles. CSP North's <i>cspReceivedTimestamp</i> is its send time (agreed mapping, about 350 ms
later than receipt), so the Comms Hub → CSP leg includes CSP North processing.</footer>
</main>
{_CHECK}
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(path)
    return path

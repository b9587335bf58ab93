"""DS&A retrieval: exact alert-timing statistics for a month or any period, and the Q&A dashboard.

``alert-timing report --data-dir DIR (--month YYYY-MM | --from ISO --to ISO) --out OUTDIR [--sat FILE]``

Reads the AST files the metrics service writes (``DIR/ast/date=YYYY-MM-DD/ast_*_r<n>.parquet``
and ``.json``) with DuckDB: of each 15-minute window only the latest revision's files, of
each delivery only its latest revision. With several metrics partitions each partition
writes its own files for every window (``ast_*_p<partition>_r<n>.*``, its own deliveries):
the latest revision of each (window, partition) is read and the partitions are combined,
records by union (a delivery lives in one partition), window counts by sum. Records are
selected by ``dsp_received`` in [from, to). Statistics are exact (``quantile_cont``'s figures, i.e.
linear interpolation between the two nearest ranks); negative legs (clock skew) are
counted, not used in percentiles, as in the 15-minute reports. Rejected inputs, service responses
and deliveries without alert come from the JSON window reports (they are not records).

Writes to OUTDIR: ``summary.csv``, ``by_region.csv``, ``by_category.csv``,
``by_alert_code.csv``, ``by_dcc_alert_code.csv``, ``by_day.csv``, ``by_interval.csv``
(15 minutes), ``completeness.csv`` (per day), ``latency_histogram.csv``,
``operational_metrics.csv`` and ``operational_worst_windows.csv`` (share within target, see
below), ``by_service_user.csv`` and ``worst_hubs.csv`` (who: Service Users by handshake p95,
the Comms Hubs with the slowest Comms Hub -> CSP leg) and the Q&A dashboard ``index.html``;
with ``--sat FILE`` (CSV with columns response_id,time) also ``sat_missing_in_ast.csv`` and
``ast_missing_in_sat.csv``; with ``--pdf`` also ``report.pdf``, the dashboard printed by headless
Chromium. ``--hub ID`` / ``--service-user ID`` narrow every file to that Comms Hub's / Service
User's records and add ``alerts.csv``, its alerts with their legs (response ids for ``trace``).

Operational metrics, in the style of the DCC's performance measures: per leg, the share of
alerts within the leg's target (``--targets FILE``, else ``ALERT_TIMING_TARGETS``, else the
packaged illustrative ``shared/targets.toml``), by owner, region and category (``all`` rows
too). A leg counts an alert where it was measured (not null, not negative); a ``no_handshake``
record also counts for the legs that end at the handshake (``su_handshake_ms``,
``end_to_end_ms``) and is never within target there.

Every latency figure (percentiles, histograms, operational metrics) reads only the records that
:data:`LATENCY_ROWS` admits: throttled deliveries are not latencies.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from shared import settings as settings_mod
from shared.alert_codes import ALERT_NAMES
from shared.events import LEGS
from shared.targets import Targets, TargetsError, load_targets
from shared.timefmt import TimestampError, format_iso, parse_iso, to_ms

__all__ = ["ALERTS_SQL", "HANDSHAKE_LEGS", "LATENCY_ROWS", "MIN_ALERTS", "SERVICE_USER_COLUMNS", "TARGETS_ENV",
           "TOP_HUBS", "WORST_HUB_COLUMNS", "ReportError", "add_parser", "counted_for_target", "exact_quantiles",
           "main", "measured", "month_bounds", "narrowing", "operational_sql", "percentiles", "period_label", "run",
           "select_files", "service_user_sql", "window_partitions", "worst_hubs_sql"]

#: ``ast_<window>[_p<partition>]_r<revision>.<kind>``; no partition: the single-partition default
#: (read as partition 0).
FILE_RE = re.compile(r"^ast_(\d{8}T\d{4})(?:_p(\d+))?_r(\d+)\.(parquet|json)$")
DATE_DIR_RE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
QUANTILES = (0.5, 0.9, 0.95, 0.99)
#: SAT and AST times differ a little: look this far beyond the period for the other side.
SAT_MARGIN_MS = 3_600_000
HISTOGRAM_BINS_PER_DECADE = 20
#: The one place that says which records have latencies: a throttled delivery (the DSP discarded
#: it under alert storm protection) was never meant to reach a Service User.
LATENCY_ROWS = "status <> 'throttled'"
#: Legs that end at the Service User's handshake: a record without one fails their target.
HANDSHAKE_LEGS = ("su_handshake_ms", "end_to_end_ms")
TARGETS_ENV = "ALERT_TIMING_TARGETS"
WORST_WINDOWS = 20
#: DuckDB's memory for the report (``--memory-limit``): beyond it, tables and sorts spill to a
#: working directory under ``TMPDIR`` (removed afterwards), so a national month fits.
MEMORY_LIMIT = "2GB"
#: ``worst_hubs.csv``: a hub is ranked when it has at least this many alerts (``--min-alerts``) ...
MIN_ALERTS = 20
#: ... and at most this many hubs are listed (``--top``).
TOP_HUBS = 100
#: The leg ``by_service_user.csv`` measures against its target: the Service User's acknowledgement.
SERVICE_USER_LEG = "su_handshake_ms"
SERVICE_USER_COLUMNS = ("period", "service_user_id", "alerts", "complete", "no_handshake", "throttled",
                        "dsp_to_su_p50_ms", "dsp_to_su_p95_ms", "su_handshake_p50_ms", "su_handshake_p95_ms",
                        "su_handshake_p99_ms", "share_within_target")
WORST_HUB_COLUMNS = ("period", "rank", "comms_hub_id", "region", "alerts", "hub_to_csp_p50_ms", "hub_to_csp_p95_ms",
                     "missing_hub_timestamp", "clock_skew")


class ReportError(Exception):
    """A problem with the request or the data, said plainly (exit status in ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------- period


def month_bounds(month: str) -> tuple[int, int]:
    """``YYYY-MM`` -> [first instant, first instant of the next month) in epoch ms (UTC)."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", month or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ReportError(f"--month {month!r} is not YYYY-MM", 2)
    year, mon = int(m.group(1)), int(m.group(2))
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return to_ms(start), to_ms(end)


def period_label(month: str | None, start_ms: int, end_ms: int) -> str:
    """The ``period`` column: ``YYYY-MM`` for a month, else the ISO 8601 interval ``start/end``."""
    return month if month else f"{format_iso(start_ms)}/{format_iso(end_ms)}"


def _period(args: argparse.Namespace) -> tuple[int, int]:
    if args.month:
        if args.from_ or args.to:
            raise ReportError("give either --month or --from/--to, not both", 2)
        return month_bounds(args.month)
    if not (args.from_ and args.to):
        raise ReportError("give --month YYYY-MM, or both --from and --to (ISO 8601)", 2)
    try:
        start, end = parse_iso(args.from_), parse_iso(args.to)
    except TimestampError as exc:
        raise ReportError(str(exc), 2) from None
    if end <= start:
        raise ReportError(f"--to {args.to} is not after --from {args.from_}", 2)
    return start, end


# ----------------------------------------------------------------------------- files


def select_files(data_dir: Path, start_ms: int, end_ms: int) -> tuple[list[Path], list[Path]]:
    """Latest revision's Parquet and JSON file of every window in [start, end) and every
    metrics partition: the files of windows starting from one window before ``start`` (a
    window holds the records of its 15 minutes by dsp_received)."""
    root = Path(data_dir) / "ast"
    first_day = format_iso(start_ms - 900_000)[:10]
    last_day = format_iso(end_ms - 1)[:10]
    latest: dict[tuple[str, int, str], tuple[int, Path]] = {}
    for folder in root.iterdir() if root.is_dir() else ():
        m = DATE_DIR_RE.match(folder.name)
        if not m or not (first_day <= m.group(1) <= last_day) or not folder.is_dir():
            continue
        for path in folder.iterdir():
            f = FILE_RE.match(path.name)
            if not f:
                continue
            window, partition, revision, kind = f.group(1), int(f.group(2) or 0), int(f.group(3)), f.group(4)
            w_start = parse_iso(f"{window[:4]}-{window[4:6]}-{window[6:8]}T{window[9:11]}:{window[11:13]}:00Z")
            if w_start + 900_000 <= start_ms or w_start >= end_ms:
                continue
            key = (window, partition, kind)
            held = latest.get(key)
            if held is None or revision > held[0]:
                latest[key] = (revision, path)
    parquet = [p for (_, _, k), (_, p) in sorted(latest.items()) if k == "parquet"]
    reports = [p for (_, _, k), (_, p) in sorted(latest.items()) if k == "json"]
    return parquet, reports


def window_partitions(paths: Sequence[Path]) -> dict[str, set[int]]:
    """Window (``YYYYMMDDTHHMM``) -> the metrics partitions whose files are among ``paths``."""
    out: dict[str, set[int]] = {}
    for path in paths:
        f = FILE_RE.match(Path(path).name)
        if f:
            out.setdefault(f.group(1), set()).add(int(f.group(2) or 0))
    return out


class _RowCounts(msgspec.Struct):
    region: str
    category: str
    service_responses_seen: int = 0
    rejected: int = 0
    delivery_without_alert: int = 0


class _ReportCounts(msgspec.Struct):
    window_start: str
    revision: int
    rows: list[_RowCounts]


_report_counts = msgspec.json.Decoder(_ReportCounts)


def _window_counts(paths: list[Path], start_ms: int, end_ms: int) -> list[tuple[int, int, int, int]]:
    """(window start ms, rejected, service responses, deliveries without alert) of each window,
    the partitions' reports of a window added up (partition 0 alone counts responses and
    rejections; each partition its own deliveries without alert)."""
    sums: dict[int, list[int]] = {}
    for path in paths:
        try:
            rep = _report_counts.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ReportError(f"cannot read window report {path}: {exc}") from None
        start = parse_iso(rep.window_start)
        if not start_ms - 900_000 < start < end_ms:
            continue
        for row in rep.rows:
            if row.region == "all" and row.category == "all":
                held = sums.setdefault(start, [0, 0, 0])
                held[0] += row.rejected
                held[1] += row.service_responses_seen
                held[2] += row.delivery_without_alert
    return [(start, c[0], c[1], c[2]) for start, c in sorted(sums.items())]


# ----------------------------------------------------------------------------- query


class _Progress:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.started = time.perf_counter()
        self.last = self.started

    def __call__(self, message: str) -> None:
        now = time.perf_counter()
        if self.enabled:
            print(f"[{now - self.started:6.1f} s] {message}", file=sys.stderr, flush=True)
        self.last = now


def measured(leg: str) -> str:
    """SQL: the record has a usable latency for ``leg`` (measured, not clock skew, not throttled)."""
    if leg not in LEGS:
        raise ValueError(f"unknown leg {leg!r}")
    return f"({leg} >= 0 AND {LATENCY_ROWS})"


def percentiles(leg: str, quantiles: Sequence[float] = QUANTILES) -> str:
    """SQL aggregate: the exact ``quantiles`` of ``leg`` over its usable latencies, as a list
    (``quantile_cont``: linear interpolation at rank q * (n - 1) of the sorted values; every
    percentile of the report comes from here)."""
    return f"quantile_cont({leg}, {list(quantiles)}) FILTER (WHERE {measured(leg)})"


def exact_quantiles(leg: str, keys: Sequence[tuple[str, str]] = (), where: str = "",
                    quantiles: Sequence[float] = QUANTILES) -> str:
    """SQL query: per group of ``keys`` [(expression, name)] of table ``ast`` (``where`` a WHERE
    clause or empty), the list ``{leg}_q`` of the exact ``quantiles`` of ``leg``'s usable
    latencies, the very numbers :func:`percentiles` (``quantile_cont``) gives: the value at
    rank floor(q * (n - 1)) of the sorted values, plus the fraction of the way to the one at the
    next rank. The legs are whole milliseconds: the values are counted (a hash aggregate, which
    spills to disk) and the ranks read off the running counts, instead of holding every value
    of a group in memory as ``quantile_cont`` does."""
    names = [name for _, name in keys]
    cols = "".join(f"{name}, " for name in names)
    cond = f"{where} AND {measured(leg)}" if where else f"WHERE {measured(leg)}"
    part = f"PARTITION BY {', '.join(names)}" if names else ""
    bounds = []
    picks = []
    for i, q in enumerate(quantiles, start=1):
        rn = f"(n - 1)::DOUBLE * {float(q)!r}::DOUBLE"
        bounds.append(f"min(v) FILTER (WHERE cum > floor({rn})) AS lo{i}, "
                      f"min(v) FILTER (WHERE cum > ceil({rn})) AS hi{i}, any_value({rn}) AS rn{i}")
        picks.append(f"CASE WHEN lo{i} = hi{i} THEN lo{i}::DOUBLE "
                     f"ELSE lo{i}::DOUBLE + (hi{i}::DOUBLE - lo{i}::DOUBLE) * (rn{i} - floor(rn{i})) END")
    return f"""
SELECT {cols}[{', '.join(picks)}] AS {leg}_q
FROM (
    SELECT {cols}{', '.join(bounds)}
    FROM (
        SELECT {cols}v, sum(c) OVER ({part} ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum,
               sum(c) OVER ({part}) AS n
        FROM (SELECT {''.join(f"{expr} AS {name}, " for expr, name in keys)}{leg} AS v, count(*) AS c
              FROM ast {cond} GROUP BY ALL)
    )
    {f"GROUP BY {', '.join(names)}" if names else ""}
)"""


def counted_for_target(leg: str) -> str:
    """SQL: the record counts for ``leg``'s share within target: measured, or, for the legs that
    end at the handshake, a ``no_handshake`` record (never within target)."""
    counts = measured(leg)
    if leg in HANDSHAKE_LEGS:
        counts = f"({counts} OR status = 'no_handshake')"
    return counts


def _leg_columns() -> str:
    parts = []
    for leg in LEGS:
        parts.append(f"count({leg}) FILTER (WHERE {measured(leg)}) AS {leg}_count")
        parts.append(f"max({leg}) FILTER (WHERE {measured(leg)}) AS {leg}_max")
    return ",\n       ".join(parts)


def _leg_outputs() -> str:
    parts = []
    for leg in LEGS:
        parts.append(f"{leg}_count")
        for i, q in enumerate(QUANTILES, start=1):
            parts.append(f"round({leg}_q[{i}], 3) AS {leg}_p{int(q * 100)}")
        parts.append(f"{leg}_max")
    return ", ".join(parts)


COUNTS = """count(*) AS alerts,
       count(*) FILTER (WHERE status = 'complete') AS complete,
       count(*) FILTER (WHERE status = 'no_handshake') AS no_handshake,
       count(*) FILTER (WHERE status = 'incomplete') AS incomplete,
       count(*) FILTER (WHERE status = 'throttled') AS throttled,
       count(*) FILTER (WHERE missing_hub) AS missing_hub_timestamp,
       count(*) FILTER (WHERE clock_skew) AS clock_skew"""


def _grouped(keys: Sequence[tuple[str, str]], where: str = "", extra: Sequence[tuple[str, str]] = ()) -> str:
    """Exact statistics grouped by ``keys`` [(expression, name)], plus ``extra`` aggregates: the
    counts in one pass, each leg's percentiles (:func:`exact_quantiles`) joined on the keys."""
    names = ", ".join(name for _, name in keys)
    inner_keys = "".join(f"{expr} AS {name}, " for expr, name in keys)
    inner_extra = "".join(f"{expr} AS {name}, " for expr, name in extra)
    outer_extra = "".join(f"{name}, " for _, name in extra)
    group = f"GROUP BY {names}" if keys else ""
    order = "ORDER BY " + ", ".join(f"g.{name}" for _, name in keys) if keys else ""
    joins = []
    for leg in LEGS:
        on = " AND ".join(f"g.{name} IS NOT DISTINCT FROM q_{leg}.{name}" for _, name in keys)
        joins.append(f"LEFT JOIN ({exact_quantiles(leg, keys, where)}) q_{leg} ON {on}" if keys
                     else f"CROSS JOIN ({exact_quantiles(leg, keys, where)}) q_{leg}")
    return f"""
SELECT {''.join(f"g.{name} AS {name}, " for _, name in keys)}{outer_extra}alerts, complete, no_handshake,
       incomplete, throttled, missing_hub_timestamp, clock_skew, {_leg_outputs()}
FROM (
    SELECT {inner_keys}{inner_extra}
       {COUNTS},
       {_leg_columns()}
    FROM ast {where}
    {group}
) g
{chr(10).join(joins)}
{order}"""


INTERVAL = "time_bucket(INTERVAL 15 MINUTE, dsp_received)"
DAY = "strftime(dsp_received, '%Y-%m-%d')"


def operational_sql(period: str, legs: Sequence[str]) -> dict[str, str]:
    """SQL of the operational metrics over table ``ast`` and table ``targets`` (leg, owner,
    region, category, target_ms): ``op_legs`` (records that count, and those within target),
    ``operational_metrics`` and ``operational_worst_windows`` (the 15-minute windows and legs
    with the lowest share within target, ties by more alerts outside it). ``op_legs`` holds the
    counts per leg, owner, region, category and 15-minute window, never a row per record: its
    size does not grow with the records."""
    if not legs:
        raise ValueError("operational metrics need at least one leg with a target")
    values = []
    for leg in legs:
        counts = counted_for_target(leg)
        values.append(f"SELECT '{leg}' AS leg, region, category, {INTERVAL} AS interval_ts,\n"
                      f"       CASE WHEN {measured(leg)} THEN {leg} END AS ms\nFROM ast WHERE {counts}")
    order = "list_position([" + ", ".join(f"'{leg}'" for leg in LEGS) + "], leg)"
    share = "round(sum(within_target) / sum(alerts), 6)"
    quoted = period.replace("'", "''")
    return {
        "op_legs": f"""
SELECT v.leg, t.owner, v.region, v.category, v.interval_ts, t.target_ms, count(*) AS alerts,
       count(*) FILTER (WHERE coalesce(v.ms <= t.target_ms, false)) AS within_target
FROM ({' UNION ALL '.join(values)}) v
JOIN targets t ON t.leg = v.leg AND t.region = v.region AND t.category = v.category
GROUP BY ALL""",
        "operational_metrics": f"""
SELECT '{quoted}' AS period, leg, owner,
       CASE WHEN grouping(region) = 1 THEN 'all' ELSE region END AS region,
       CASE WHEN grouping(category) = 1 THEN 'all' ELSE category END AS category,
       CASE WHEN min(target_ms) = max(target_ms) THEN min(target_ms) END AS target_ms,
       sum(alerts)::BIGINT AS alerts, sum(within_target)::BIGINT AS within_target,
       {share} AS share_within_target
FROM op_legs
GROUP BY GROUPING SETS ((leg, owner, region, category), (leg, owner, region), (leg, owner, category), (leg, owner))
ORDER BY {order}, grouping(region), region, grouping(category), category""",
        "operational_worst_windows": f"""
SELECT {_iso_col('interval_ts')} AS interval_start, leg, owner,
       CASE WHEN min(target_ms) = max(target_ms) THEN min(target_ms) END AS target_ms,
       sum(alerts)::BIGINT AS alerts, sum(within_target)::BIGINT AS within_target,
       {share} AS share_within_target
FROM op_legs
GROUP BY interval_ts, leg, owner
ORDER BY share_within_target, sum(alerts) - sum(within_target) DESC, interval_start, {order}
LIMIT {WORST_WINDOWS}""",
    }


def service_user_sql(period: str) -> str:
    """SQL of ``by_service_user.csv`` over table ``ast`` (with ``service_user_id``) and table
    ``targets``: one row per Service User, the DSP and handshake legs' exact percentiles and the
    share of its alerts within the handshake leg's target (counted as in the operational
    metrics; empty when the targets give the leg none), slowest handshake p95 first."""
    leg = SERVICE_USER_LEG
    quoted = period.replace("'", "''")
    keys = [("service_user_id", "service_user_id")]
    return f"""
SELECT '{quoted}' AS period, s.service_user_id, alerts, complete, no_handshake, throttled,
       round(dsp_q[1], 3) AS dsp_to_su_p50_ms, round(dsp_q[2], 3) AS dsp_to_su_p95_ms,
       round(hs_q[1], 3) AS su_handshake_p50_ms, round(hs_q[2], 3) AS su_handshake_p95_ms,
       round(hs_q[3], 3) AS su_handshake_p99_ms,
       round(within_target / nullif(counted, 0), 6) AS share_within_target
FROM (
    SELECT a.service_user_id, count(*) AS alerts,
           count(*) FILTER (WHERE status = 'complete') AS complete,
           count(*) FILTER (WHERE status = 'no_handshake') AS no_handshake,
           count(*) FILTER (WHERE status = 'throttled') AS throttled,
           count(*) FILTER (WHERE t.target_ms IS NOT NULL AND {counted_for_target(leg)}) AS counted,
           count(*) FILTER (WHERE {measured(leg)} AND {leg} <= t.target_ms) AS within_target
    FROM ast a LEFT JOIN targets t ON t.leg = '{leg}' AND t.region = a.region AND t.category = a.category
    GROUP BY a.service_user_id
) s
LEFT JOIN (SELECT service_user_id, dsp_to_su_ms_q AS dsp_q
           FROM ({exact_quantiles('dsp_to_su_ms', keys, quantiles=(0.5, 0.95))})) d
       ON d.service_user_id IS NOT DISTINCT FROM s.service_user_id
LEFT JOIN (SELECT service_user_id, {leg}_q AS hs_q
           FROM ({exact_quantiles(leg, keys, quantiles=(0.5, 0.95, 0.99))})) h
       ON h.service_user_id IS NOT DISTINCT FROM s.service_user_id
ORDER BY su_handshake_p95_ms DESC NULLS LAST, alerts DESC, s.service_user_id NULLS LAST"""


def worst_hubs_sql(period: str, min_alerts: int = MIN_ALERTS, top: int = TOP_HUBS) -> str:
    """SQL of ``worst_hubs.csv`` over table ``ast`` (with ``comms_hub_id``): of the hubs with at
    least ``min_alerts`` alerts, the ``top`` with the slowest Comms Hub -> CSP leg (exact p95;
    ties: more alerts first, then hub id; hubs without a measured leg last), ranked from 1. The
    hubs are counted first and percentiles kept only for those ranked: a month has tens of
    millions of hubs with a few alerts each."""
    if min_alerts < 1 or top < 1:
        raise ValueError("min_alerts and top must be at least 1")
    leg = "hub_to_csp_ms"
    quoted = period.replace("'", "''")
    order = "hub_to_csp_p95_ms DESC NULLS LAST, alerts DESC, comms_hub_id"
    return f"""
SELECT '{quoted}' AS period, row_number() OVER (ORDER BY {order}) AS rank, comms_hub_id, region, alerts,
       hub_to_csp_p50_ms, hub_to_csp_p95_ms, missing_hub_timestamp, clock_skew
FROM (
    SELECT comms_hub_id, region, alerts, round(q[1], 3) AS hub_to_csp_p50_ms, round(q[2], 3) AS hub_to_csp_p95_ms,
           missing_hub_timestamp, clock_skew
    FROM (
        SELECT comms_hub_id, min(region) AS region, count(*) AS alerts, {percentiles(leg, (0.5, 0.95))} AS q,
               count(*) FILTER (WHERE missing_hub) AS missing_hub_timestamp,
               count(*) FILTER (WHERE clock_skew) AS clock_skew
        FROM ast
        WHERE comms_hub_id IN (SELECT comms_hub_id FROM ast GROUP BY comms_hub_id HAVING count(*) >= {int(min_alerts)})
        GROUP BY comms_hub_id
    )
    ORDER BY {order}
    LIMIT {int(top)}
)
ORDER BY rank"""


#: ``alerts.csv`` of a narrowed report: each alert's delivery with its status and legs as recorded
#: (raw: a throttled delivery's or a skewed leg's value is shown, though no percentile uses it).
ALERTS_SQL = f"""
SELECT response_id, delivery_id, strftime(dsp_received, '%Y-%m-%dT%H:%M:%S.%gZ') AS dsp_received, service_user_id,
       comms_hub_id, region, category, alert_code, dcc_alert_code, status, missing_hub AS missing_hub_timestamp,
       clock_skew, {', '.join(LEGS)}
FROM ast ORDER BY ast.dsp_received, delivery_id"""


def narrowing(hub: int | None, service_user: str | None) -> list[tuple[str, str]]:
    """The SQL conditions [(condition, label)] that narrow the records to ``hub`` and/or
    ``service_user`` (none: the whole period)."""
    out = []
    if hub is not None:
        out.append((f"comms_hub_id = {int(hub)}", f"Comms Hub {int(hub)}"))
    if service_user is not None:
        quoted = service_user.replace("'", "''")
        out.append((f"service_user_id = '{quoted}'", f"Service User {service_user}"))
    return out


def _iso_col(expr: str) -> str:
    return f"strftime({expr}, '%Y-%m-%dT%H:%M:%SZ')"


def _rows(con: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = con.execute(sql)
    return [d[0] for d in cur.description], cur.fetchall()


def _one(con: Any, sql: str) -> tuple[Any, ...]:
    rows = con.execute(sql).fetchall()
    return tuple(rows[0])


def _write_csv(con: Any, table: str, path: Path) -> None:
    con.execute(f"COPY (SELECT * FROM {table}) TO '{_sql_path(path)}' (HEADER, DELIMITER ',')")


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _table_data(con: Any, table: str) -> dict[str, list[Any]]:
    names, rows = _rows(con, f"SELECT * FROM {table}")
    return {name: [r[i] for r in rows] for i, name in enumerate(names)}


def build_report(data_dir: Path, start_ms: int, end_ms: int, out_dir: Path, sat: Path | None = None,
                 progress: bool = True, *, targets: Targets | None = None, period: str | None = None,
                 pdf: bool = False, min_alerts: int = MIN_ALERTS, top: int = TOP_HUBS, hub: int | None = None,
                 service_user: str | None = None, memory_limit: str = MEMORY_LIMIT) -> dict[str, Any]:
    """See :func:`_build_report`; DuckDB works in a database file of its own in a temporary
    directory (the records stored compressed, spilled beyond ``memory_limit``), removed after."""
    with tempfile.TemporaryDirectory(prefix="alert-timing-report-") as work:
        return _build_report(data_dir, start_ms, end_ms, out_dir, sat, progress, targets=targets, period=period,
                             pdf=pdf, min_alerts=min_alerts, top=top, hub=hub, service_user=service_user,
                             work=Path(work), memory_limit=memory_limit)


def _build_report(data_dir: Path, start_ms: int, end_ms: int, out_dir: Path, sat: Path | None,
                  progress: bool, *, targets: Targets | None, period: str | None, pdf: bool, min_alerts: int,
                  top: int, hub: int | None, service_user: str | None, work: Path,
                  memory_limit: str) -> dict[str, Any]:
    """Compute everything, write the CSVs and the dashboard (and ``report.pdf`` when ``pdf``);
    return paths and headline counts. ``targets``: the packaged defaults when None; ``period``:
    the ``period`` column of the operational metrics (default: the ISO 8601 interval);
    ``min_alerts`` and ``top``: which hubs ``worst_hubs.csv`` ranks and how many it lists;
    ``hub`` / ``service_user``: narrow every output to that Comms Hub / Service User's records
    and list them in ``alerts.csv`` (the window reports' counts of rejected inputs, service
    responses and deliveries without alert name no hub or Service User: left empty)."""
    import duckdb

    if targets is None:
        targets = load_targets()
    if period is None:
        period = period_label(None, start_ms, end_ms)

    say = _Progress(progress)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ReportError(f"no such data directory: {data_dir}", 2)
    narrowed = narrowing(hub, service_user)
    if sat is not None and narrowed:
        raise ReportError("--sat cross-checks the whole period: it cannot be narrowed to a hub or Service User", 2)
    if sat is not None and not Path(sat).is_file():
        raise ReportError(f"no such SAT file: {sat}", 2)
    period_text = f"{format_iso(start_ms)} to {format_iso(end_ms)}"
    who = "".join(f", {label}" for _, label in narrowed)
    parquet, reports = select_files(data_dir, start_ms, end_ms)
    if not parquet:
        raise ReportError(f"no AST data in {data_dir / 'ast'} for {period_text}")
    by_window = window_partitions(parquet)
    partitions = set().union(*by_window.values())
    say(f"{len(by_window):,} windows, {len(parquet):,} window files (latest revisions"
        + (f", {len(partitions)} partitions" if len(partitions) > 1 else "") + f") for {period_text}")
    gaps = sorted(w for w, held in by_window.items() if held != partitions)
    if gaps:  # said, not hidden: a partition reports from its own first event, or has not closed it yet
        say(f"{len(gaps):,} windows have files from only some partitions (first {gaps[0]})")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(work / "report.duckdb"))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    try:
        con.execute(f"SET memory_limit = '{memory_limit.replace(chr(39), '')}'")
    except duckdb.Error as exc:
        raise ReportError(f"--memory-limit {memory_limit!r}: {exc}", 2) from None
    con.execute(f"SET temp_directory = '{_sql_path(work / 'spill')}'")
    files_sql = "[" + ", ".join(f"'{_sql_path(p)}'" for p in parquet) + "]"
    t_from = f"make_timestamptz({start_ms * 1000})"
    t_to = f"make_timestamptz({end_ms * 1000})"
    ids = "delivery_id, response_id, " if narrowed else ""  # the alerts.csv listing: a few rows only
    columns = f"""{ids}revision, region, category, alert_code, alert_name, dcc_alert_code, status, dsp_received,
       service_user_id, comms_hub_id,
       chf_received IS NULL AS missing_hub, list_contains(flags, 'clock_skew') AS clock_skew, {', '.join(LEGS)}"""
    where = f"WHERE dsp_received >= {t_from} AND dsp_received < {t_to}" + "".join(f" AND {c}" for c, _ in narrowed)
    try:
        con.execute(f"""CREATE TABLE ast AS
                        SELECT hash(delivery_id) AS id_hash, {columns} FROM read_parquet({files_sql}) {where}""")
        # DISTINCT as an operator (a hash aggregate that spills), not count(DISTINCT): at 100 M
        # records that aggregate's state outgrew the memory limit and the report stopped.
        records, distinct = _one(con, "SELECT (SELECT count(*) FROM ast), "
                                      "(SELECT count(*) FROM (SELECT DISTINCT id_hash FROM ast))")
        if records != distinct:  # a delivery in several files: keep its latest revision
            con.execute("DROP TABLE ast")
            con.execute(f"""CREATE TABLE ast AS
                SELECT hash(delivery_id) AS id_hash, {columns} FROM read_parquet({files_sql}) {where}
                QUALIFY row_number() OVER (PARTITION BY delivery_id ORDER BY revision DESC) = 1""")
            (records,) = _one(con, "SELECT count(*) FROM ast")
    except duckdb.Error as exc:
        raise ReportError(f"cannot read the AST Parquet files: {exc}") from None
    if not records:
        raise ReportError(f"no AST records in {data_dir / 'ast'} for {period_text}{who}")
    say(f"{records:,} records loaded{who}")

    import pyarrow as pa

    names_src = pa.table({"code": list(ALERT_NAMES), "name": list(ALERT_NAMES.values())})
    con.register("names_src", names_src)
    con.execute("CREATE TEMP TABLE names AS SELECT code::VARCHAR AS code, name::VARCHAR AS name FROM names_src")
    counts = _window_counts(reports, start_ms, end_ms)
    windows_src = pa.table({
        "start_ms": pa.array([c[0] for c in counts], pa.int64()),
        # not of any one hub or Service User: left empty when narrowed
        "rejected": pa.array([None if narrowed else c[1] for c in counts], pa.int64()),
        "service_responses_seen": pa.array([None if narrowed else c[2] for c in counts], pa.int64()),
        "delivery_without_alert": pa.array([None if narrowed else c[3] for c in counts], pa.int64()),
    })
    con.register("windows_src", windows_src)
    con.execute("""CREATE TEMP TABLE windows AS
                   SELECT make_timestamptz(start_ms * 1000) AS start, rejected, service_responses_seen,
                          delivery_without_alert FROM windows_src""")

    written: list[Path] = []
    unnarrowed = "NULL" if narrowed else "0"

    def make(name: str, sql: str) -> None:
        con.execute(f"CREATE TEMP TABLE {name} AS {sql}")
        path = out_dir / f"{name}.csv"
        _write_csv(con, name, path)
        written.append(path)

    make("summary", f"""
SELECT '{format_iso(start_ms)}' AS period_start, '{format_iso(end_ms)}' AS period_end,
       (SELECT count(*) FROM windows) AS windows_reported, *,
       (SELECT coalesce(sum(rejected), {unnarrowed}) FROM windows) AS rejected,
       (SELECT coalesce(sum(service_responses_seen), {unnarrowed}) FROM windows) AS service_responses_seen,
       (SELECT coalesce(sum(delivery_without_alert), {unnarrowed}) FROM windows) AS delivery_without_alert
FROM ({_grouped([])})""")
    say("overall")
    make("by_region", _grouped([("region", "region")]))
    make("by_category", _grouped([("category", "category")]))
    say("by region and category")
    make("by_alert_code", f"""
SELECT s.alert_code, coalesce(s.record_alert_name, n.name) AS alert_name, s.* EXCLUDE (alert_code, record_alert_name)
FROM ({_grouped([("coalesce(alert_code, 'unknown')", "alert_code")],
               extra=[("max(alert_name)", "record_alert_name")])}) s
LEFT JOIN names n ON n.code = s.alert_code
ORDER BY s.alerts DESC, s.alert_code""")
    say("by alert code")
    make("by_dcc_alert_code",
         _grouped([("dcc_alert_code", "dcc_alert_code")], where="WHERE dcc_alert_code IS NOT NULL"))
    say("by DCC alert code")
    make("by_day", f"""
SELECT coalesce(d.day, w.day) AS day, d.* EXCLUDE (day),
       coalesce(w.rejected, {unnarrowed}) AS rejected,
       coalesce(w.service_responses_seen, {unnarrowed}) AS service_responses_seen,
       coalesce(w.delivery_without_alert, {unnarrowed}) AS delivery_without_alert
FROM ({_grouped([(DAY, "day")])}) d
FULL JOIN (SELECT strftime(start, '%Y-%m-%d') AS day, sum(rejected) AS rejected,
                  sum(service_responses_seen) AS service_responses_seen,
                  sum(delivery_without_alert) AS delivery_without_alert
           FROM windows WHERE start >= {t_from} AND start < {t_to} GROUP BY 1) w ON w.day = d.day
ORDER BY 1""")
    say("by day")
    make("by_interval", f"""
WITH stats AS ({_grouped([(INTERVAL, "interval_ts")])})
SELECT {_iso_col('coalesce(s.interval_ts, w.start)')} AS interval_start,
       s.* EXCLUDE (interval_ts),
       coalesce(w.rejected, {unnarrowed}) AS rejected,
       coalesce(w.service_responses_seen, {unnarrowed}) AS service_responses_seen,
       coalesce(w.delivery_without_alert, {unnarrowed}) AS delivery_without_alert
FROM stats s FULL JOIN (SELECT * FROM windows WHERE start >= {t_from} AND start < {t_to}) w
     ON w.start = s.interval_ts
ORDER BY interval_start""")
    say("by 15-minute interval")
    make("completeness", """
SELECT day, coalesce(alerts, 0) AS alerts, coalesce(missing_hub_timestamp, 0) AS missing_hub_timestamp,
       coalesce(no_handshake, 0) AS no_handshake, coalesce(incomplete, 0) AS incomplete,
       coalesce(throttled, 0) AS throttled,
       coalesce(clock_skew, 0) AS clock_skew, rejected, service_responses_seen,
       delivery_without_alert,
       round(100.0 * missing_hub_timestamp / nullif(alerts, 0), 3) AS missing_hub_timestamp_pct,
       round(100.0 * no_handshake / nullif(alerts, 0), 3) AS no_handshake_pct,
       round(100.0 * clock_skew / nullif(alerts, 0), 3) AS clock_skew_pct
FROM by_day ORDER BY day""")
    hist_parts = []
    for leg in LEGS:
        hist_parts.append(f"""
SELECT '{leg}' AS leg, CASE WHEN {leg} = 0 THEN -1 ELSE floor(log10({leg}) * {HISTOGRAM_BINS_PER_DECADE}) END AS b,
       count(*) AS n
FROM ast WHERE {measured(leg)} GROUP BY ALL""")
    make("latency_histogram", f"""
SELECT leg,
       CASE WHEN b < 0 THEN 0 ELSE round(pow(10, b / {HISTOGRAM_BINS_PER_DECADE}), 3) END AS ms_from,
       CASE WHEN b < 0 THEN 1 ELSE round(pow(10, (b + 1) / {HISTOGRAM_BINS_PER_DECADE}), 3) END AS ms_to,
       n AS count
FROM ({' UNION ALL '.join(hist_parts)})
ORDER BY leg, ms_from""")
    say("completeness and distributions")

    target_rows = targets.rows()
    con.register("targets_src", pa.table({
        "leg": [r[0] for r in target_rows], "owner": [r[1] for r in target_rows],
        "region": [r[2] for r in target_rows], "category": [r[3] for r in target_rows],
        "target_ms": pa.array([r[4] for r in target_rows], pa.int64()),
    }))
    con.execute("CREATE TEMP TABLE targets AS SELECT * FROM targets_src")
    op = operational_sql(period, [t.leg for t in targets.legs])
    con.execute(f"CREATE TABLE op_legs AS {op['op_legs']}")
    make("operational_metrics", op["operational_metrics"])
    make("operational_worst_windows", op["operational_worst_windows"])
    say("operational metrics" + (" (illustrative targets)" if targets.illustrative else f" ({targets.source})"))
    make("by_service_user", service_user_sql(period))
    make("worst_hubs", worst_hubs_sql(period, min_alerts, top))
    say("by Service User and worst Comms Hubs")
    if narrowed:
        make("alerts", ALERTS_SQL)
        say(f"the alerts{who}")

    sat_result: dict[str, int] = {}
    if sat is not None:
        sat_result = _sat_check(con, Path(sat), parquet, data_dir, start_ms, end_ms, t_from, t_to, out_dir, written)
        say("SAT cross-check")

    # Imported here: plotly takes about a second to import, and every `alert-timing` command
    # (each service process too) imports this module to build its parser.
    from alert_timing.dashboard import build_dashboard

    data = {name: _table_data(con, name) for name in ("summary", "by_region", "by_category", "by_alert_code",
                                                      "by_dcc_alert_code", "by_day", "by_interval",
                                                      "completeness", "latency_histogram", "operational_metrics",
                                                      "operational_worst_windows", "by_service_user", "worst_hubs")}
    targets_note = (f"Targets: {targets.source}" + (" — ILLUSTRATIVE: public sources give no alert targets; "
                                                     "set --targets or ALERT_TIMING_TARGETS to the operator's file."
                                                     if targets.illustrative else ""))
    handshake = next((t for t in targets.legs if t.leg == SERVICE_USER_LEG), None)
    html = build_dashboard(data, out_dir / "index.html", title=f"Alert throughput timing, {period_text}{who}",
                           sat=sat_result, targets_note=targets_note,
                           handshake_target_ms=None if handshake is None else handshake.target_ms,
                           handshake_target_varies=handshake is not None
                           and bool(handshake.by_region or handshake.by_category))
    written.append(html)
    say("dashboard")
    con.close()
    if pdf:
        from alert_timing.pdf import PdfError, print_pdf

        try:
            written.append(print_pdf(html, out_dir / "report.pdf"))
        except PdfError as exc:
            raise ReportError(str(exc)) from None
        say("report.pdf")
    return {"records": records, "windows": len(by_window), "partitions": sorted(partitions), "paths": written,
            "sat": sat_result}


def _sat_check(con: Any, sat: Path, parquet: list[Path], data_dir: Path, start_ms: int, end_ms: int,
               t_from: str, t_to: str, out_dir: Path, written: list[Path]) -> dict[str, int]:
    import csv

    import duckdb

    try:
        with sat.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read SAT file {sat}: {exc}") from None
    by_name = {h.strip().lower(): h for h in header}
    if "response_id" not in by_name or "time" not in by_name:
        raise ReportError(f"SAT file {sat} needs a header with columns response_id,time (found: {','.join(header)})")
    rid = '"' + by_name["response_id"].replace('"', '""') + '"'
    tcol = '"' + by_name["time"].replace('"', '""') + '"'
    try:
        con.execute(f"""
CREATE TEMP TABLE sat AS
SELECT trim({rid}) AS response_id, trim({tcol}) AS time,
       coalesce(try_cast(trim({tcol}) AS TIMESTAMPTZ),
                try_strptime(trim({tcol}), '%Y%m%d%H%M%S.%g')::TIMESTAMPTZ) AS sat_time
FROM read_csv('{_sql_path(sat)}', header = true, all_varchar = true)
WHERE {rid} IS NOT NULL AND trim({rid}) <> ''""")
    except duckdb.Error as exc:
        raise ReportError(f"cannot read SAT file {sat} (CSV with columns response_id,time): {exc}") from None
    wide, _ = select_files(data_dir, start_ms - SAT_MARGIN_MS, end_ms + SAT_MARGIN_MS)
    files_sql = "[" + ", ".join(f"'{_sql_path(p)}'" for p in wide) + "]"
    margin = SAT_MARGIN_MS * 1000
    con.execute(f"""
CREATE TEMP TABLE ast_ids AS
SELECT DISTINCT response_id FROM read_parquet({files_sql})
WHERE dsp_received >= make_timestamptz({start_ms * 1000 - margin})
  AND dsp_received < make_timestamptz({end_ms * 1000 + margin})""")
    con.execute(f"""
CREATE TEMP TABLE sat_missing_in_ast AS
SELECT s.response_id, s.time FROM sat s
WHERE (s.sat_time IS NULL OR (s.sat_time >= {t_from} AND s.sat_time < {t_to}))
  AND NOT EXISTS (SELECT 1 FROM ast_ids a WHERE a.response_id = s.response_id)
ORDER BY s.sat_time, s.response_id""")
    con.execute(f"""
CREATE TEMP TABLE sat_ids AS
SELECT DISTINCT response_id FROM sat
WHERE sat_time IS NULL OR (sat_time >= make_timestamptz({start_ms * 1000 - margin})
                           AND sat_time < make_timestamptz({end_ms * 1000 + margin}))""")
    period_files = "[" + ", ".join(f"'{_sql_path(p)}'" for p in parquet) + "]"
    con.execute(f"""
CREATE TEMP TABLE ast_missing_in_sat AS
SELECT response_id, strftime(min(dsp_received), '%Y-%m-%dT%H:%M:%S.%gZ') AS dsp_received,
       min(region) AS region, min(alert_code) AS alert_code, count(DISTINCT delivery_id) AS deliveries
FROM read_parquet({period_files}) a
WHERE dsp_received >= {t_from} AND dsp_received < {t_to}
  AND NOT EXISTS (SELECT 1 FROM sat_ids s WHERE s.response_id = a.response_id)
GROUP BY response_id ORDER BY dsp_received, response_id""")
    for name in ("sat_missing_in_ast", "ast_missing_in_sat"):
        path = out_dir / f"{name}.csv"
        _write_csv(con, name, path)
        written.append(path)
    (sat_entries,) = _one(con, f"""SELECT count(*) FROM sat WHERE sat_time IS NULL
                                   OR (sat_time >= {t_from} AND sat_time < {t_to})""")
    (missing_ast,) = _one(con, "SELECT count(*) FROM sat_missing_in_ast")
    (missing_sat,) = _one(con, "SELECT count(*) FROM ast_missing_in_sat")
    (ast_ids,) = _one(con, f"""SELECT count(*) FROM (SELECT DISTINCT response_id FROM read_parquet({period_files})
                               WHERE dsp_received >= {t_from} AND dsp_received < {t_to})""")
    return {"sat_entries": sat_entries, "ast_response_ids": ast_ids, "sat_missing_in_ast": missing_ast,
            "ast_missing_in_sat": missing_sat}


# ------------------------------------------------------------------------------- CLI


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` command to an argparse subparsers object."""
    p = subparsers.add_parser(
        "report",
        help="DS&A: exact statistics for a month or period, CSVs and the Q&A dashboard",
        description="Read the AST files (latest revisions) with DuckDB and write exact statistics by region, "
                    "category, alert code, DCC alert code, day and 15-minute interval, completeness, the "
                    "operational metrics (operational_metrics.csv: share of alerts within target per leg, "
                    "owner, region and category), Service Users by handshake (by_service_user.csv), the Comms "
                    "Hubs with the slowest Comms Hub -> CSP leg (worst_hubs.csv) and the self-contained Q&A dashboard "
                    "(index.html); --hub or --service-user narrow it all to one and list its alerts (alerts.csv). "
                    "--sat cross-checks against SAT entries; --pdf also prints the dashboard to report.pdf.",
    )
    p.add_argument("--data-dir", required=True, help="the metrics data directory (holding ast/date=YYYY-MM-DD/)")
    p.add_argument("--month", help="a calendar month, YYYY-MM (UTC)")
    p.add_argument("--from", dest="from_", metavar="ISO", help="period start, ISO 8601 (inclusive)")
    p.add_argument("--to", metavar="ISO", help="period end, ISO 8601 (exclusive)")
    p.add_argument("--out", required=True, help="directory for the CSVs and index.html")
    p.add_argument("--sat", metavar="FILE", help="CSV of SAT entries (response_id,time) to cross-check")
    p.add_argument("--targets", metavar="FILE",
                   help=f"TOML file of leg targets for operational_metrics.csv (default: ${TARGETS_ENV}, "
                        "else the packaged illustrative targets, shared/targets.toml)")
    p.add_argument("--pdf", action="store_true",
                   help="also write report.pdf, the dashboard printed by headless Chromium "
                        "(/usr/bin/chromium; `make chromium` installs it)")
    p.add_argument("--min-alerts", type=_at_least_one, default=MIN_ALERTS, metavar="N",
                   help=f"worst_hubs.csv ranks only hubs with at least N alerts in the period (default {MIN_ALERTS})")
    p.add_argument("--top", type=_at_least_one, default=TOP_HUBS, metavar="N",
                   help=f"worst_hubs.csv lists at most N hubs (default {TOP_HUBS})")
    p.add_argument("--hub", type=int, metavar="ID",
                   help="narrow every output to this Comms Hub's alerts (comms_hub_id) and list them in alerts.csv")
    p.add_argument("--service-user", metavar="ID",
                   help="narrow every output to this Service User's alerts (service_user_id) and list them in "
                        "alerts.csv")
    p.add_argument("--memory-limit", default=MEMORY_LIMIT, metavar="SIZE",
                   help=f"DuckDB's memory for the report, e.g. 2GB (default {MEMORY_LIMIT}); beyond it the work "
                        "spills to a temporary directory under TMPDIR")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)
    return p


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        start, end = _period(args)
        targets_file = args.targets or settings_mod.load().targets
        try:
            targets = load_targets(targets_file)
        except TargetsError as exc:
            raise ReportError(str(exc), 2) from None
        result = build_report(Path(args.data_dir), start, end, Path(args.out),
                              Path(args.sat) if args.sat else None, progress=not args.quiet,
                              targets=targets, period=period_label(args.month, start, end), pdf=args.pdf,
                              min_alerts=args.min_alerts, top=args.top, hub=args.hub,
                              service_user=args.service_user, memory_limit=args.memory_limit)
    except ReportError as exc:
        print(f"alert-timing report: {exc}", file=sys.stderr)
        return exc.code
    except OSError as exc:
        print(f"alert-timing report: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    for path in result["paths"]:
        print(path)
    print(f"{result['records']:,} records from {result['windows']:,} windows", file=sys.stderr)
    sat = result["sat"]
    if sat:
        print(f"SAT cross-check: {sat['sat_entries']:,} SAT entries, {sat['ast_response_ids']:,} AST response ids; "
              f"{sat['sat_missing_in_ast']:,} SAT entries missing in AST, "
              f"{sat['ast_missing_in_sat']:,} AST response ids missing in SAT")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``report`` on its own: ``python -m alert_timing.report --data-dir DIR --month YYYY-MM --out OUT``."""
    parser = argparse.ArgumentParser(prog="alert-timing")
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["report", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""Timing of ``alert-timing report --month`` over a synthetic AST dataset.

``python -m alert_timing_benchmarks.report --records 10000000 [--hubs N] [--dir DIR] [--keep]`` writes a
month of 15-minute window files (Parquet records in the product's schema and JSON window
reports, the same layout the metrics service writes), runs the report over the month in a
process of its own and prints the seconds it took and its peak RSS. The data is generated
by DuckDB from a fixed seed, before and outside the timed part: the same ``--records`` and
``--hubs`` give the same files.

Who sends and who answers, as at national scale: ``--hubs`` Comms Hubs (a few alerts each; one
record in a thousand comes from a small busy cohort, ``hubs // 10000`` hubs, the only ones
``worst_hubs.csv`` can rank, and a tenth of those send 20 s late) and 300 Service Users, the
first three of them acknowledging 30 s late.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from alert_timing.report import month_bounds  # the report's own notion of a month
from shared.events import LEGS, RECORD_FIELDS, WindowReport, encoder
from shared.timefmt import format_iso

WINDOW_MS = 900_000
MONTH = "2023-06"

# One day of records, generated in SQL: legs drawn from skewed distributions, 5 % without
# HubTimestamp, 2 % never acknowledged, 0.1 % with a skewed CSP clock, a storm of supply
# outage alerts (8F57) between 03:00 and 03:30 every day. Hubs and Service Users as the
# module's docstring says.
SERVICE_USERS = 300
SLOW_SERVICE_USERS = 3
_DAY_SQL = """
WITH base AS (
    SELECT
        i,
        {day_start} + ((i - {first}) * {day_ms} // {n}) AS dsp,
        hash(i, {seed}) AS h,
        CASE WHEN hash(i, {seed} + 2) % 1000 = 0 THEN i % {busy} ELSE {busy} + hash(i, {seed} + 1) % {rest} END
            AS hub_no,
        hash(i, {seed} + 3) % {service_users} AS su_no
    FROM range({first}, {first} + {n}) t(i)
), draws AS (
    SELECT *,
        (h % 1000000) / 1000000.0 AS u1,
        ((h // 1000000) % 1000000) / 1000000.0 AS u2,
        ((h // 1000000000000) % 1000000) / 1000000.0 AS u3,
        (hash(h) % 1000000) / 1000000.0 AS u4,
        ((hash(h) // 1000000) % 1000000) / 1000000.0 AS u5,
        ((hash(h) // 1000000000000) % 10000) / 10000.0 AS u6
    FROM base
), legs AS (
    SELECT *,
        CAST(250 + 6000 * pow(u1, 3) AS BIGINT) + CASE WHEN hub_no < {late} THEN 20000 ELSE 0 END AS hub,
        CASE WHEN u6 < 0.001 THEN -CAST(50 + 200 * u2 AS BIGINT)
             ELSE CAST(20 + 400 * pow(u2, 2) AS BIGINT) END AS transit,
        CAST(5 + 150 * pow(u3, 2) AS BIGINT) AS dsp_leg,
        CAST(80 + 4000 * pow(u4, 4) AS BIGINT) + CASE WHEN su_no < {slow} THEN 30000 ELSE 0 END AS handshake,
        u5 < 0.05 AS no_hub,
        u6 BETWEEN 0.3 AND 0.32 AS no_ack,
        ['north', 'central', 'south'][1 + i % 3] AS region,
        i % 10 = 0 AS dcc,
        CASE WHEN (dsp % 86400000) BETWEEN 10800000 AND 12600000 AND u5 > 0.3 THEN '8F57'
             ELSE ['8F3F', '810D', '8F0F', '8F72', '8F35', '8F1D', '8F12', '8F66'][1 + ((h // 7) % 8)::BIGINT]
        END AS code
    FROM draws
)
SELECT
    1::BIGINT AS v,
    printf('%010d-5f1c2e', i) || CASE WHEN dcc THEN ':N53' ELSE '' END AS delivery_id,
    printf('%010d-5f1c2e', i) AS response_id,
    1::BIGINT AS revision,
    region,
    (1000000000 + hub_no)::BIGINT AS comms_hub_id,
    CASE WHEN dcc THEN 'dcc_alert' ELSE 'device_alert' END AS category,
    code AS alert_code,
    NULL::VARCHAR AS alert_name,
    CASE WHEN dcc THEN 'N53' ELSE NULL END AS dcc_alert_code,
    '0x0082' AS message_code,
    printf('00-DB-12-34-%02X-%02X-%02X-%02X', (i >> 24) % 256, (i >> 16) % 256, (i >> 8) % 256, i % 256) AS originator,
    CASE WHEN dcc THEN '90-B3-D5-1F-30-00-00-02' ELSE '90-B3-D5-1F-30-01-00-00' END AS recipient,
    printf('90-B3-D5-1F-31-%02X-%02X-00', su_no // 256, su_no % 256) AS service_user_id,
    CASE WHEN no_hub THEN NULL ELSE dsp - transit - hub - 1000 END AS device_alert_time,
    CASE WHEN no_hub THEN NULL ELSE dsp - transit - hub END AS chf_received,
    dsp - transit AS csp_received,
    dsp - transit AS csp_sent,
    dsp AS dsp_received,
    dsp + dsp_leg AS su_passed,
    CASE WHEN no_ack THEN NULL ELSE dsp + dsp_leg + handshake END AS su_acknowledged,
    CASE WHEN no_hub THEN NULL ELSE hub END AS hub_to_csp_ms,
    transit AS csp_to_dsp_ms,
    dsp_leg AS dsp_to_su_ms,
    CASE WHEN no_ack THEN NULL ELSE handshake END AS su_handshake_ms,
    CASE WHEN no_ack OR no_hub THEN NULL ELSE hub + transit + dsp_leg + handshake END AS end_to_end_ms,
    CASE WHEN no_ack THEN 'no_handshake' ELSE 'complete' END AS status,
    list_filter([CASE WHEN transit < 0 THEN 'clock_skew' END,
                 CASE WHEN region = 'north' THEN 'csp_received_mapped' END,
                 CASE WHEN no_hub THEN 'missing_hub_timestamp' END], lambda x: x IS NOT NULL) AS flags,
    CASE WHEN no_ack THEN 0 ELSE 1 END::BIGINT AS delivery_attempts,
    NULL::BIGINT AS throttled_count
FROM legs
ORDER BY dsp
"""

_TIMESTAMPS = ("device_alert_time", "chf_received", "csp_received", "csp_sent", "dsp_received", "su_passed",
               "su_acknowledged")


def _empty_leg() -> dict[str, Any]:
    return {"count": 0, "p50": None, "p90": None, "p95": None, "p99": None, "min": None, "max": None, "sum": 0,
            "sketch": {"relative_accuracy": 0.01, "gamma": 1.02020202020202, "zero_count": 0, "bins": {}}}


def generate(data_dir: Path, records: int, month: str = MONTH, seed: int = 42, progress: bool = True,
             hubs: int | None = None) -> int:
    """Write ``records`` synthetic AST records for ``month`` under ``data_dir/ast`` from ``hubs``
    Comms Hubs (default: one per 20 records); return the number of window files written."""
    hubs = max(1, records // 20) if hubs is None else hubs
    busy = max(1, hubs // 10_000)
    start, end = month_bounds(month)
    days = (end - start) // 86_400_000
    per_day = max(1, records // days)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    schema = pa.schema([
        pa.field(name, pa.timestamp("ms", tz="UTC") if name in _TIMESTAMPS else
                 (pa.list_(pa.string()) if name == "flags" else
                  (pa.int64() if name in {"v", "revision", "comms_hub_id", "delivery_attempts", "throttled_count",
                                          *LEGS}
                   else pa.string())))
        for name in RECORD_FIELDS
    ])
    written = 0
    for day in range(days):
        n = per_day if day < days - 1 else records - per_day * (days - 1)
        day_start = start + day * 86_400_000
        table = con.sql(_DAY_SQL.format(day_start=day_start, day_ms=86_400_000, n=n, first=day * per_day,
                                        seed=seed, busy=busy, rest=max(1, hubs - busy), late=max(1, busy // 10),
                                        service_users=SERVICE_USERS, slow=SLOW_SERVICE_USERS)).to_arrow_table()
        columns = []
        for name in RECORD_FIELDS:
            col = table.column(name)
            if name in _TIMESTAMPS:
                col = col.cast(pa.timestamp("ms", tz="UTC"))
            columns.append(col.cast(schema.field(name).type))
        table = pa.Table.from_arrays(columns, schema=schema)
        folder = data_dir / "ast" / f"date={format_iso(day_start)[:10]}"
        folder.mkdir(parents=True, exist_ok=True)
        first = 0
        for w in range(86_400_000 // WINDOW_MS):
            w_start = day_start + w * WINDOW_MS
            # record k of the day is at k * day // n (ms into the day): the window's end bounds k
            last = min(n, -(-(w + 1) * WINDOW_MS * n // 86_400_000))
            stem = f"ast_{format_iso(w_start)[:16].replace('-', '').replace(':', '')}_r1"
            pq.write_table(table.slice(first, last - first), folder / f"{stem}.parquet", compression="zstd")
            report = {
                "v": 1, "window_start": format_iso(w_start), "window_end": format_iso(w_start + WINDOW_MS),
                "revision": 1, "sketch_relative_accuracy": 0.01,
                "rows": [{"region": "all", "category": "all", "alerts": last - first, "complete": 0,
                          "no_handshake": 0, "incomplete": 0, "missing_hub_timestamp": 0, "clock_skew": 0,
                          "delivery_without_alert": int(w % 7 == 0), "service_responses_seen": 40 + w % 5,
                          "rejected": int(w % 11 == 0), "legs": {leg: _empty_leg() for leg in LEGS}}],
            }
            (folder / f"{stem}.json").write_bytes(encoder.encode(msgspec.convert(report, WindowReport)))
            written += 1
            first = last
        if progress:
            print(f"\rgenerated {min(records, per_day * (day + 1)):,} records ({day + 1}/{days} days)",
                  end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return written


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_bench(records: int = 10_000_000, data_dir: Path | None = None, keep: bool = False,
              hubs: int | None = None) -> dict[str, Any]:
    """Generate ``records`` records for a month (untimed), then time ``report --month`` over them
    in a process of its own (its peak RSS is the report's alone)."""
    own = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="ast-bench-")) if data_dir is None else Path(data_dir)
    generated = None
    try:
        if not (root / "ast").exists():
            t0 = time.perf_counter()
            generate(root, records, hubs=hubs)
            generated = round(time.perf_counter() - t0, 1)
            print(f"generated in {generated} s", file=sys.stderr)
        out = root / "report"
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", "alert_timing.report", "--data-dir", str(root),
                                "--month", MONTH, "--out", str(out)])
        seconds = time.perf_counter() - started
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        return {"records": records, "hubs": hubs, "exit_code": code, "seconds": round(seconds, 2),
                "generate_seconds": generated, "peak_rss_mib": round(peak_kib / 1024, 1),
                "input_bytes": _size(root / "ast"), "output_bytes": _size(out) if out.exists() else 0,
                "outputs": {f.name: f.stat().st_size for f in sorted(out.glob("*"))} if out.exists() else {},
                "out": str(out)}
    finally:
        if own and not keep:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alert_timing_benchmarks.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--hubs", type=int, default=None, help="Comms Hubs (default: one per 20 records)")
    parser.add_argument("--dir", type=Path, default=None, help="generate into (or reuse) this directory")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args(argv)
    result = run_bench(args.records, args.dir, args.keep, args.hubs)
    print(f"report --month over {result['records']:,} records: {result['seconds']} s, peak RSS "
          f"{result['peak_rss_mib']} MiB (exit {result['exit_code']}); generated in {result['generate_seconds']} s; "
          f"input {result['input_bytes'] / 2**20:.1f} MiB, output {result['output_bytes'] / 2**20:.1f} MiB")
    print(msgspec.json.encode(result).decode())
    return int(result["exit_code"])


if __name__ == "__main__":
    raise SystemExit(main())



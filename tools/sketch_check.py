"""Checks the 15-minute reports' sketches against the exact figures from the AST records:
the day's percentiles merged from the window sketches must lie within the stated relative
accuracy of the exact value at rank floor(q * (n - 1)) (the bound the reports state)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from alert_timing.report import _sql_path, measured, select_files
from services.metrics.core import merge_reports
from shared.events import LEGS, report_decoder

QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def compare(data_dir: Path, start_ms: int = 0, end_ms: int = 2**42) -> list[dict]:
    """One row per (leg, quantile): sketch value, exact value, bound, within."""
    parquet, reports = select_files(data_dir, start_ms, end_ms)
    if not parquet:
        return []
    rollup = merge_reports(report_decoder.decode(p.read_bytes()) for p in reports)
    row = next(r for r in rollup.rows if (r.region, r.category) == ("all", "all"))
    files = ", ".join(f"'{_sql_path(p)}'" for p in parquet)
    con = duckdb.connect()
    # latest revision per delivery; what the sketches leave out stays out here too (clock skew,
    # throttled deliveries): the report's own rule, ``measured``
    con.execute(f"""
        create table latest as select * from read_parquet([{files}], union_by_name = true)
        qualify row_number() over (partition by delivery_id order by revision desc) = 1""")
    out = []
    for leg in LEGS:
        values = [v for (v,) in con.execute(
            f"select {leg} from latest where {measured(leg)} order by {leg}").fetchall()]
        stats = row.legs.get(leg)
        if not values or stats is None:
            continue
        for name, q in QUANTILES:
            exact = values[int(q * (len(values) - 1))]
            sketch = getattr(stats, name)
            bound = rollup.sketch_relative_accuracy * abs(exact)
            out.append({"leg": leg, "quantile": name, "count": len(values), "sketch": sketch,
                        "exact": exact, "bound": bound,
                        "within": sketch is not None and abs(sketch - exact) <= bound + 1e-9})
    return out


def print_comparison(rows: list[dict]) -> bool:
    print(f"\n{'sketch vs exact (ms)':<26}{'sketch':>10}{'exact':>10}{'bound':>9}  within")
    for r in rows:
        print(f"{r['leg'] + ' ' + r['quantile']:<26}{r['sketch']:>10.0f}{r['exact']:>10.0f}"
              f"{r['bound']:>9.1f}  {'yes' if r['within'] else 'NO'}")
    return all(r["within"] for r in rows)

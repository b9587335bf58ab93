"""The DS&A report: records made by the core, written as window files, read back by DuckDB.

Exact quantiles are worked out by hand: DuckDB's ``quantile_cont`` interpolates linearly at
rank h = q * (n - 1) of the sorted values.
"""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alert_timing import report
from services.metrics.core import ClosedWindow, MetricsCore
from services.metrics.files import write_window
from shared import subjects as s
from shared.events import DeliveryAttempted, RejectedInput
from shared.targets import parse_targets
from shared.timefmt import format_iso
from tests.harness.metrics_events import ack, at, exp, tick


def _write(data_dir: Path, closed: list[ClosedWindow]) -> None:
    for c in closed:
        write_window(data_dir, c)


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Window 10:00: north device alerts e2e 1000, 1100, ..., 2000 (11 values);
    window 10:15: two south DCC alerts (N53, e2e 400 and 800), one revised from no_handshake
    to complete after its window closed (files r1 and r2 both on disk), a rejected input;
    window 10:30: empty (closed by event time 10:55)."""
    data_dir = tmp_path_factory.mktemp("data")
    core = MetricsCore()
    events: list[object] = []
    for i in range(11):
        e = exp(f"n{i:02d}", f"10:0{i % 10}:{10 + i}.000")
        events += [e, ack(e, 1000 + 100 * i)]
    s1 = exp("s1", "10:16:00.000", region="south", category="dcc_alert", dcc="N53", chf=None)
    s2 = exp("s2", "10:17:00.000", region="south", category="dcc_alert", dcc="N53")
    s3 = exp("s3", "10:18:00.000", region="south", category="dcc_alert", dcc="N53")
    events += [s1, ack(s1, 300), s2, ack(s2, 400), s3,
               RejectedInput(event_id="rj", stage="hub-capture", reason="bad_json", message="bad",
                             subject=s.IN_CSP_SOUTH, dsp_received=at("10:20:00.000")),
               tick("10:55:00.000")]
    out = core.apply(events)
    _write(data_dir, out.closed)
    late = core.apply([ack(s3, 800)])  # s3: no_handshake -> complete, window 10:15 r2
    assert [c.report.revision for c in late.closed] == [2]
    _write(data_dir, late.closed)
    return data_dir


def test_report_exact_statistics(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = report.main(["--data-dir", str(dataset), "--from", "2023-06-01T10:00:00Z", "--to", "2023-06-01T11:00:00Z",
                        "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    for name in ("summary", "by_region", "by_category", "by_alert_code", "by_dcc_alert_code", "by_day",
                 "by_interval", "completeness", "latency_histogram"):
        assert str(out / f"{name}.csv") in printed.out
    assert str(out / "index.html") in printed.out
    assert "records loaded" in printed.err  # progress

    [summary] = _csv(out / "summary.csv")
    assert (summary["alerts"], summary["complete"], summary["no_handshake"]) == ("14", "14", "0")  # s3 revised
    assert summary["missing_hub_timestamp"] == "1" and summary["rejected"] == "1"
    assert summary["windows_reported"] == "3"  # 10:00, 10:15 (r2), 10:30 (event time 10:55 closes up to 10:30)

    regions = {r["region"]: r for r in _csv(out / "by_region.csv")}
    north = regions["north"]
    # 11 values 1000..2000 step 100: p50 h=5 -> 1500; p90 h=9 -> 1900; p95 h=9.5 -> 1950; p99 h=9.9 -> 1990
    assert (north["end_to_end_ms_count"], north["end_to_end_ms_p50"], north["end_to_end_ms_p90"],
            north["end_to_end_ms_p95"], north["end_to_end_ms_p99"], north["end_to_end_ms_max"]) == (
        "11", "1500.0", "1900.0", "1950.0", "1990.0", "2000")
    south = regions["south"]
    # s1 has no hub timestamp (no e2e); s2 400, s3 800 (its latest revision): p50 h=0.5 -> 600; p99 h=0.99 -> 796
    assert (south["alerts"], south["end_to_end_ms_count"], south["end_to_end_ms_p50"], south["end_to_end_ms_p99"]) == (
        "3", "2", "600.0", "796.0")
    assert south["su_handshake_ms_p50"] == "100.0"

    categories = {r["category"]: r["alerts"] for r in _csv(out / "by_category.csv")}
    assert categories == {"device_alert": "11", "dcc_alert": "3"}
    [dcc] = _csv(out / "by_dcc_alert_code.csv")
    assert (dcc["dcc_alert_code"], dcc["alerts"]) == ("N53", "3")
    [code_row] = _csv(out / "by_alert_code.csv")
    assert code_row["alert_code"] == "8F3F" and code_row["alert_name"] and code_row["alerts"] == "14"

    [day] = _csv(out / "by_day.csv")
    assert (day["day"], day["alerts"], day["rejected"]) == ("2023-06-01", "14", "1")
    intervals = {r["interval_start"]: r for r in _csv(out / "by_interval.csv")}
    assert list(intervals) == ["2023-06-01T10:00:00Z", "2023-06-01T10:15:00Z", "2023-06-01T10:30:00Z"]
    assert intervals["2023-06-01T10:00:00Z"]["end_to_end_ms_p50"] == "1500.0"
    assert intervals["2023-06-01T10:15:00Z"]["rejected"] == "1"
    assert intervals["2023-06-01T10:30:00Z"]["alerts"] == ""  # an empty window: reported, no records
    [comp] = _csv(out / "completeness.csv")
    assert (comp["missing_hub_timestamp"], comp["no_handshake"], comp["rejected"]) == ("1", "0", "1")
    hist = [r for r in _csv(out / "latency_histogram.csv") if r["leg"] == "end_to_end_ms"]
    assert sum(int(r["count"]) for r in hist) == 13
    assert (out / "index.html").stat().st_size > 1_000_000  # plotly.js inlined


def test_month_and_period_selection(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main(["--data-dir", str(dataset), "--month", "2023-06", "--out", str(tmp_path / "m"),
                        "--quiet"]) == 0
    assert _csv(tmp_path / "m" / "summary.csv")[0]["alerts"] == "14"
    # 10:15 to 10:30 only: the south alerts
    assert report.main(["--data-dir", str(dataset), "--from", "2023-06-01T10:15:00Z", "--to", "2023-06-01T10:30:00Z",
                        "--out", str(tmp_path / "p"), "--quiet"]) == 0
    assert _csv(tmp_path / "p" / "summary.csv")[0]["alerts"] == "3"
    assert report.month_bounds("2023-12") == (at("00:00:00.000") + 183 * 86_400_000, 1_704_067_200_000)


def test_sat_cross_check(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sat = tmp_path / "sat.csv"
    sat.write_text("response_id,time\n"
                   "resp-n00,2023-06-01T10:00:10.100Z\n"
                   "resp-s1,20230601101600.050\n"
                   "resp-zz,2023-06-01T10:40:00.000Z\n"  # not in AST
                   "resp-out,2023-06-01T15:00:00.000Z\n")  # outside the period: ignored
    out = tmp_path / "out"
    code = report.main(["--data-dir", str(dataset), "--from", "2023-06-01T10:00:00Z", "--to", "2023-06-01T11:00:00Z",
                        "--out", str(out), "--sat", str(sat), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "3 SAT entries" in printed and "1 SAT entries missing in AST" in printed
    assert "12 AST response ids missing in SAT" in printed
    assert [r["response_id"] for r in _csv(out / "sat_missing_in_ast.csv")] == ["resp-zz"]
    missing = [r["response_id"] for r in _csv(out / "ast_missing_in_sat.csv")]
    assert len(missing) == 12 and "resp-n00" not in missing and "resp-s1" not in missing and "resp-s3" in missing


def test_sketch_p99_within_the_stated_bound_of_the_exact_p99(tmp_path: Path) -> None:
    """101 alerts in one window: rank 0.99 * 100 = 99 is a whole rank, so DuckDB's exact p99
    is the 100th value, and the sketch's p99 must be within its relative accuracy of it."""
    rng = random.Random(5)
    core = MetricsCore()
    events: list[object] = []
    for i in range(101):
        e = exp(f"r{i:03d}", f"10:{i // 10:02d}:{i % 10:02d}.000")
        events += [e, ack(e, rng.randint(300, 90_000))]
    events.append(tick("10:30:00.000"))
    [closed] = core.apply(events).closed
    write_window(tmp_path, closed)
    out = tmp_path / "out"
    assert report.main(["--data-dir", str(tmp_path), "--from", "2023-06-01T10:00:00Z",
                        "--to", "2023-06-01T10:15:00Z", "--out", str(out), "--quiet"]) == 0
    exact = float(_csv(out / "summary.csv")[0]["end_to_end_ms_p99"])
    all_row = next(r for r in closed.report.rows if (r.region, r.category) == ("all", "all"))
    sketch_p99 = all_row.legs["end_to_end_ms"].p99
    bound = closed.report.sketch_relative_accuracy
    assert sketch_p99 is not None and abs(sketch_p99 - exact) <= bound * exact


def test_clear_errors_without_tracebacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert report.main(["--data-dir", str(missing), "--month", "2023-06", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no such data directory" in err and "Traceback" not in err
    (tmp_path / "empty" / "ast").mkdir(parents=True)
    assert report.main(["--data-dir", str(tmp_path / "empty"), "--month", "2023-06", "--out", str(tmp_path / "o")]) == 1
    assert "no AST data" in capsys.readouterr().err
    assert report.main(["--data-dir", str(tmp_path), "--month", "June", "--out", str(tmp_path / "o")]) == 2
    assert "not YYYY-MM" in capsys.readouterr().err
    assert report.main(["--data-dir", str(tmp_path), "--from", "2023-06-02T00:00:00Z", "--to", "2023-06-01T00:00:00Z",
                        "--out", str(tmp_path / "o")]) == 2
    assert "not after" in capsys.readouterr().err
    assert report.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--month" in capsys.readouterr().err


def test_sat_file_needs_its_columns(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sat = tmp_path / "sat.csv"
    sat.write_text("id,when\nresp-n00,2023-06-01T10:00:10Z\n")
    assert report.main(["--data-dir", str(dataset), "--month", "2023-06", "--out", str(tmp_path / "o"),
                        "--sat", str(sat), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "response_id,time" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- operational metrics

TARGETS = """
[legs.su_handshake_ms]
owner = "Service User"
target_ms = 100

[legs.end_to_end_ms]
owner = "DCC"
target_ms = 1000
by_category = { dcc_alert = 2000 }
"""


def _sql_rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in con.execute(sql).fetchall()]


def test_operational_sql_counts_shares_and_leaves_out_throttled_and_skew() -> None:
    """Seven hand-made records against hand-set targets; the expected counts are worked out below."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("""CREATE TABLE ast (region VARCHAR, category VARCHAR, status VARCHAR, dsp_received TIMESTAMPTZ,
                   hub_to_csp_ms BIGINT, csp_to_dsp_ms BIGINT, dsp_to_su_ms BIGINT, su_handshake_ms BIGINT,
                   end_to_end_ms BIGINT)""")
    rows = [  # region, category, status, minute, handshake, end to end
        ("north", "device_alert", "complete", 1, 50, 900),       # 1: within both
        ("north", "device_alert", "complete", 2, 150, 1500),     # 2: outside both
        ("north", "device_alert", "no_handshake", 3, None, None),  # 3: counts for both, outside
        ("south", "dcc_alert", "complete", 4, 100, 1800),        # 4: within both (dcc target 2000)
        ("south", "device_alert", "throttled", 5, 10, 10),       # 5: throttled: no latency anywhere
        ("south", "device_alert", "complete", 6, 20, -5),        # 6: e2e clock skew: not counted; handshake within
        ("north", "device_alert", "incomplete", 16, None, 500),  # 7: window 10:15, e2e within; no handshake leg
    ]
    for region, category, status, minute, handshake, e2e in rows:
        con.execute("INSERT INTO ast VALUES (?, ?, ?, make_timestamptz(2023, 6, 1, 10, ?, 0), NULL, NULL, NULL, ?, ?)",
                    [region, category, status, minute, handshake, e2e])
    targets = parse_targets(TARGETS)
    con.execute("CREATE TABLE targets (leg VARCHAR, owner VARCHAR, region VARCHAR, category VARCHAR, target_ms BIGINT)")
    con.executemany("INSERT INTO targets VALUES (?, ?, ?, ?, ?)", targets.rows())
    sql = report.operational_sql("2023-06", [t.leg for t in targets.legs])
    con.execute(f"CREATE TABLE op_legs AS {sql['op_legs']}")
    got = _sql_rows(con, sql["operational_metrics"])
    assert got == [
        # su_handshake_ms (target 100): north 1, 2, 3 (one within); south 4 and 6 (both within); 7 not counted
        ("2023-06", "su_handshake_ms", "Service User", "north", "device_alert", 100, 3, 1, 0.333333),
        ("2023-06", "su_handshake_ms", "Service User", "north", "all", 100, 3, 1, 0.333333),
        ("2023-06", "su_handshake_ms", "Service User", "south", "dcc_alert", 100, 1, 1, 1.0),
        ("2023-06", "su_handshake_ms", "Service User", "south", "device_alert", 100, 1, 1, 1.0),
        ("2023-06", "su_handshake_ms", "Service User", "south", "all", 100, 2, 2, 1.0),
        ("2023-06", "su_handshake_ms", "Service User", "all", "dcc_alert", 100, 1, 1, 1.0),
        ("2023-06", "su_handshake_ms", "Service User", "all", "device_alert", 100, 4, 2, 0.5),
        ("2023-06", "su_handshake_ms", "Service User", "all", "all", 100, 5, 3, 0.6),
        # end_to_end_ms (1000, dcc_alert 2000): north 1, 2, 3, 7 (1 and 7 within); south 4 within
        ("2023-06", "end_to_end_ms", "DCC", "north", "device_alert", 1000, 4, 2, 0.5),
        ("2023-06", "end_to_end_ms", "DCC", "north", "all", 1000, 4, 2, 0.5),
        ("2023-06", "end_to_end_ms", "DCC", "south", "dcc_alert", 2000, 1, 1, 1.0),
        ("2023-06", "end_to_end_ms", "DCC", "south", "all", 2000, 1, 1, 1.0),
        ("2023-06", "end_to_end_ms", "DCC", "all", "dcc_alert", 2000, 1, 1, 1.0),
        ("2023-06", "end_to_end_ms", "DCC", "all", "device_alert", 1000, 4, 2, 0.5),
        ("2023-06", "end_to_end_ms", "DCC", "all", "all", None, 5, 3, 0.6),  # two targets: none stated
    ]
    worst = _sql_rows(con, sql["operational_worst_windows"])
    assert worst == [
        ("2023-06-01T10:00:00Z", "end_to_end_ms", "DCC", None, 4, 2, 0.5),
        ("2023-06-01T10:00:00Z", "su_handshake_ms", "Service User", 100, 5, 3, 0.6),
        ("2023-06-01T10:15:00Z", "end_to_end_ms", "DCC", 1000, 1, 1, 1.0),
    ]


def test_latency_filter_is_one_expression() -> None:
    assert report.measured("end_to_end_ms") == f"(end_to_end_ms >= 0 AND {report.LATENCY_ROWS})"
    assert "throttled" in report.LATENCY_ROWS
    with pytest.raises(ValueError, match="unknown leg"):
        report.measured("end_to_end_ms; DROP TABLE ast")
    with pytest.raises(ValueError, match="at least one leg"):
        report.operational_sql("2023-06", [])


def test_period_label() -> None:
    assert report.period_label("2023-06", 0, 1) == "2023-06"
    assert report.period_label(None, at("10:00:00.000"), at("11:00:00.000")) == (
        "2023-06-01T10:00:00.000Z/2023-06-01T11:00:00.000Z")


def test_report_writes_operational_metrics(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    targets = tmp_path / "targets.toml"
    targets.write_text(TARGETS, encoding="utf-8")
    out = tmp_path / "month"
    monkeypatch.setenv("ALERT_TIMING_TARGETS", str(targets))  # the environment names the file ...
    assert report.main(["--data-dir", str(dataset), "--month", "2023-06", "--out", str(out), "--quiet"]) == 0
    assert str(out / "operational_metrics.csv") in capsys.readouterr().out
    rows = _csv(out / "operational_metrics.csv")
    assert list(rows[0]) == ["period", "leg", "owner", "region", "category", "target_ms", "alerts", "within_target",
                             "share_within_target"]
    by_slice = {(r["leg"], r["region"], r["category"]): r for r in rows}
    assert {r["period"] for r in rows} == {"2023-06"}
    assert {r["leg"] for r in rows} == {"su_handshake_ms", "end_to_end_ms"}
    # north e2e 1000, 1100, ..., 2000 against 1000 ms: only the first; south (dcc, 2000 ms): 400 and 800
    north = by_slice[("end_to_end_ms", "north", "device_alert")]
    assert (north["owner"], north["target_ms"], north["alerts"], north["within_target"],
            north["share_within_target"]) == ("DCC", "1000", "11", "1", "0.090909")
    south = by_slice[("end_to_end_ms", "south", "all")]
    assert (south["target_ms"], south["alerts"], south["within_target"]) == ("2000", "2", "2")
    assert by_slice[("end_to_end_ms", "all", "all")]["target_ms"] == ""
    assert by_slice[("su_handshake_ms", "all", "all")]["within_target"] == "14"  # every handshake 100 ms
    worst = _csv(out / "operational_worst_windows.csv")
    assert (worst[0]["interval_start"], worst[0]["leg"], worst[0]["alerts"], worst[0]["within_target"]) == (
        "2023-06-01T10:00:00Z", "end_to_end_ms", "11", "1")

    # ... and --targets wins over it; a range gives the ISO interval as the period.
    monkeypatch.setenv("ALERT_TIMING_TARGETS", str(tmp_path / "absent.toml"))
    out = tmp_path / "range"
    assert report.main(["--data-dir", str(dataset), "--from", "2023-06-01T10:00:00Z", "--to", "2023-06-01T11:00:00Z",
                        "--out", str(out), "--targets", str(targets), "--quiet"]) == 0
    assert {r["period"] for r in _csv(out / "operational_metrics.csv")} == {
        "2023-06-01T10:00:00.000Z/2023-06-01T11:00:00.000Z"}


def test_report_defaults_to_the_packaged_targets(dataset: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALERT_TIMING_TARGETS", raising=False)
    out = tmp_path / "out"
    assert report.main(["--data-dir", str(dataset), "--month", "2023-06", "--out", str(out), "--quiet"]) == 0
    owners = {(r["leg"], r["owner"]) for r in _csv(out / "operational_metrics.csv")}
    assert owners == {("hub_to_csp_ms", "CSP"), ("csp_to_dsp_ms", "CSP"), ("dsp_to_su_ms", "DSP"),
                      ("su_handshake_ms", "Service User"), ("end_to_end_ms", "DCC")}
    assert "ILLUSTRATIVE" in (out / "index.html").read_text(encoding="utf-8")


def test_bad_targets_file_is_one_line_and_exit_2(dataset: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[legs.end_to_end_ms]\nowner = 'DCC'\ntarget_ms = -1\n", encoding="utf-8")
    assert report.main(["--data-dir", str(dataset), "--month", "2023-06", "--out", str(tmp_path / "o"),
                        "--targets", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "target_ms must be a positive" in err and "Traceback" not in err


def test_throttled_records_are_not_latencies(dataset: Path, tmp_path: Path) -> None:
    """A later revision of window 10:00 marks n10 (e2e 2000 ms, legs kept) throttled: it leaves the
    percentiles, the histogram and the operational metrics, and stays a record."""
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    [first] = list(data.glob("ast/date=2023-06-01/ast_20230601T1000_r1.parquet"))
    table = pq.read_table(first)
    ids = table.column("delivery_id").to_pylist()
    status = ["throttled" if i == "n10" else s for i, s in zip(ids, table.column("status").to_pylist(), strict=True)]
    table = table.set_column(table.schema.get_field_index("status"), "status", pa.array(status, pa.string()))
    table = table.set_column(table.schema.get_field_index("revision"), "revision",
                             pa.array([2] * table.num_rows, pa.int64()))
    pq.write_table(table, first.with_name("ast_20230601T1000_r2.parquet"))
    targets = tmp_path / "targets.toml"
    targets.write_text(TARGETS, encoding="utf-8")
    out = tmp_path / "out"
    assert report.main(["--data-dir", str(data), "--month", "2023-06", "--out", str(out), "--targets", str(targets),
                        "--quiet"]) == 0
    north = {r["region"]: r for r in _csv(out / "by_region.csv")}["north"]
    assert (north["alerts"], north["end_to_end_ms_count"], north["end_to_end_ms_max"]) == ("11", "10", "1900")
    hist = [r for r in _csv(out / "latency_histogram.csv") if r["leg"] == "end_to_end_ms"]
    assert sum(int(r["count"]) for r in hist) == 12
    metrics = {(r["leg"], r["region"], r["category"]): r for r in _csv(out / "operational_metrics.csv")}
    assert metrics[("end_to_end_ms", "north", "all")]["alerts"] == "10"
    assert metrics[("su_handshake_ms", "north", "all")]["alerts"] == "10"


# ----------------------------------------------------------------------------- who: Service Users and Comms Hubs

SU_SLOW = "90-B3-D5-1F-30-0A-00-00"  # acknowledges 40 s late
SU_A = "90-B3-D5-1F-30-01-00-00"
SU_B = "90-B3-D5-1F-30-02-00-00"
HUB_LATE = 2_000_000_001  # its alerts reach the CSP 20 s late
HUB_FEW = 2_000_000_099  # even later, but too few alerts to be ranked by default
HUB_REGION = {HUB_LATE: "north", 2_000_000_010: "central", 2_000_000_011: "south", 2_000_000_012: "north",
              HUB_FEW: "south"}
#: The handshake target is 500 ms, 800 ms for CSP South: the share follows the region.
DRILL_TARGETS = """
[legs.su_handshake_ms]
owner = "Service User"
target_ms = 500
by_region = { south = 800 }
"""
DRILL_FROM = "2023-06-01T10:00:00Z"
DRILL_TO = "2023-06-01T11:00:00Z"


class _Alert(msgspec.Struct, frozen=True):
    did: str
    hub: int
    su: str
    dsp: int
    chf: int | None  # ms before csp_received (csp_received is dsp - 150): the Comms Hub -> CSP leg
    dsp_leg: int
    handshake: int | None  # None: never acknowledged
    throttled: bool = False


def _drill_alerts() -> list[_Alert]:
    """98 alerts, one every 20 s from 10:00: HUB_LATE 27 (24 about 20 s late, 2 without HubTimestamp,
    1 throttled 80 s late), three ordinary hubs of 22 (two alerts of the last with the hub's
    clock ahead: clock skew), HUB_FEW 5 (30 s late). Service Users in turn A, B, SLOW; SLOW's
    handshakes 40 s and more, A's every tenth alert never acknowledged."""
    plan: list[tuple[int, int | None, bool]] = []  # (hub, chf lead, throttled)
    plan += [(HUB_LATE, 20_000 + 13 * k, False) for k in range(24)]
    plan += [(HUB_LATE, None, False)] * 2 + [(HUB_LATE, 80_000, True)]
    for n, hub in enumerate((2_000_000_010, 2_000_000_011, 2_000_000_012)):
        plan += [(hub, 300 + 17 * k + 100 * n, False) for k in range(22)]
    plan[-1] = plan[-2] = (2_000_000_012, -250, False)  # the hub's clock ahead: negative leg
    plan += [(HUB_FEW, 30_000 + k, False) for k in range(5)]
    alerts = []
    for i, (hub, lead, throttled) in enumerate(plan):
        su = (SU_A, SU_B, SU_SLOW)[i % 3]
        if su == SU_SLOW:
            handshake: int | None = 40_000 + (i % 7) * 100
        elif su == SU_A and i % 10 == 0:
            handshake = None
        else:
            handshake = 100 + (i * 37) % 900
        alerts.append(_Alert(did=f"d{i:03d}", hub=hub, su=su, dsp=at("10:00:00.000") + 20_000 * i,
                             chf=lead, dsp_leg=50 + i % 30, handshake=handshake, throttled=throttled))
    return alerts


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[_Alert]]:
    data_dir = tmp_path_factory.mktemp("drill")
    alerts = _drill_alerts()
    events: list[object] = []
    for a in alerts:
        hms = format_iso(a.dsp)[11:23]
        e = exp(a.did, hms, region=HUB_REGION[a.hub],  # type: ignore[arg-type]
                chf=None if a.chf is None else str(-150 - a.chf))
        events.append(msgspec.structs.replace(e, comms_hub_id=a.hub, service_user_id=a.su))
        if a.throttled:
            events.append(DeliveryAttempted(event_id=f"thr:{a.did}", delivery_id=a.did, response_id=e.response_id,
                                            dcc_alert_code=None, service_user_id=a.su, su_passed=None,
                                            su_acknowledged=None, outcome="throttled"))
        elif a.handshake is not None:
            passed = a.dsp + a.dsp_leg
            events.append(DeliveryAttempted(event_id=f"ack:{a.did}", delivery_id=a.did, response_id=e.response_id,
                                            dcc_alert_code=None, service_user_id=a.su, su_passed=passed,
                                            su_acknowledged=passed + a.handshake, outcome="acknowledged"))
    events.append(tick("12:00:00.000"))
    _write(data_dir, MetricsCore().apply(events).closed)
    return data_dir, alerts


def _pct(values: list[int], q: float) -> float | None:
    """Linear interpolation between the two nearest ranks (rank h = q * (n - 1))."""
    if not values:
        return None
    v = sorted(values)
    h = q * (len(v) - 1)
    lo = int(h)
    hi = min(lo + 1, len(v) - 1)
    return round(v[lo] + (h - lo) * (v[hi] - v[lo]), 3)


def _f(text: str) -> float | None:
    return None if text == "" else float(text)


def _drill_report(data_dir: Path, out: Path, *extra: str) -> None:
    targets = out.parent / f"{out.name}-targets.toml"
    targets.write_text(DRILL_TARGETS, encoding="utf-8")
    assert report.main(["--data-dir", str(data_dir), "--from", DRILL_FROM, "--to", DRILL_TO, "--out", str(out),
                        "--targets", str(targets), "--quiet", *extra]) == 0


def _expected_service_user(alerts: list[_Alert], su: str) -> dict[str, object]:
    mine = [a for a in alerts if a.su == su]
    legs = [a for a in mine if not a.throttled]
    handshakes = [a.handshake for a in legs if a.handshake is not None]
    counted = [a for a in legs]  # a measured handshake, or none at all (no_handshake): never within
    within = [a for a in legs if a.handshake is not None
              and a.handshake <= (800 if HUB_REGION[a.hub] == "south" else 500)]
    return {
        "period": f"{DRILL_FROM[:-1]}.000Z/{DRILL_TO[:-1]}.000Z", "service_user_id": su, "alerts": len(mine),
        "complete": sum(1 for a in legs if a.handshake is not None),
        "no_handshake": sum(1 for a in legs if a.handshake is None),
        "throttled": sum(1 for a in mine if a.throttled),
        "dsp_to_su_p50_ms": _pct([a.dsp_leg for a in legs if a.handshake is not None], 0.5),
        "dsp_to_su_p95_ms": _pct([a.dsp_leg for a in legs if a.handshake is not None], 0.95),
        "su_handshake_p50_ms": _pct(handshakes, 0.5), "su_handshake_p95_ms": _pct(handshakes, 0.95),
        "su_handshake_p99_ms": _pct(handshakes, 0.99),
        "share_within_target": round(len(within) / len(counted), 6),
    }


def _as_expected(row: dict[str, str]) -> dict[str, object]:
    return {k: (v if k in {"period", "service_user_id", "region"} else
                int(v) if k in {"alerts", "complete", "no_handshake", "throttled", "rank", "comms_hub_id",
                                "missing_hub_timestamp", "clock_skew"} else _f(v)) for k, v in row.items()}


def test_by_service_user_puts_the_slow_acknowledger_first(drill: tuple[Path, list[_Alert]], tmp_path: Path) -> None:
    data_dir, alerts = drill
    out = tmp_path / "out"
    _drill_report(data_dir, out)
    with (out / "by_service_user.csv").open(newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ("period,service_user_id,alerts,complete,no_handshake,throttled,dsp_to_su_p50_ms,"
                      "dsp_to_su_p95_ms,su_handshake_p50_ms,su_handshake_p95_ms,su_handshake_p99_ms,"
                      "share_within_target").split(",")
    rows = [_as_expected(r) for r in _csv(out / "by_service_user.csv")]
    assert rows[0]["service_user_id"] == SU_SLOW
    assert rows[0] == _expected_service_user(alerts, SU_SLOW)
    assert rows[0]["su_handshake_p95_ms"] >= 40_000 and rows[0]["throttled"] == 1  # type: ignore[operator]
    assert rows[0]["share_within_target"] == 0.0
    assert {r["service_user_id"]: r for r in rows[1:]} == {
        su: _expected_service_user(alerts, su) for su in (SU_A, SU_B)}
    p95 = [r["su_handshake_p95_ms"] for r in rows]
    assert p95 == sorted(p95, reverse=True)  # type: ignore[type-var]
    assert rows[1]["no_handshake"] or rows[2]["no_handshake"]  # A's unacknowledged alerts are in the share
    page = (out / "index.html").read_text(encoding="utf-8")
    assert f"Slowest Service User: {SU_SLOW}, handshake p95 40,600 ms over 32 alerts, 0.0 % within target" in page
    assert f"Worst Comms Hub: {HUB_LATE} (north), Comms Hub → CSP p95 20,284 ms over 27 alerts" in page
    assert "target 500 ms (default; varies by region or category)" in page


def _expected_hub(alerts: list[_Alert], hub: int, rank: int) -> dict[str, object]:
    mine = [a for a in alerts if a.hub == hub]
    legs = [a.chf for a in mine if a.chf is not None and not a.throttled and a.chf >= 0]
    return {"period": f"{DRILL_FROM[:-1]}.000Z/{DRILL_TO[:-1]}.000Z", "rank": rank, "comms_hub_id": hub,
            "region": HUB_REGION[hub], "alerts": len(mine), "hub_to_csp_p50_ms": _pct(legs, 0.5),
            "hub_to_csp_p95_ms": _pct(legs, 0.95), "missing_hub_timestamp": sum(1 for a in mine if a.chf is None),
            "clock_skew": sum(1 for a in mine if a.chf is not None and a.chf < 0)}


def test_worst_hubs_puts_the_late_hub_first(drill: tuple[Path, list[_Alert]], tmp_path: Path) -> None:
    data_dir, alerts = drill
    out = tmp_path / "out"
    _drill_report(data_dir, out)
    with (out / "worst_hubs.csv").open(newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ("period,rank,comms_hub_id,region,alerts,hub_to_csp_p50_ms,hub_to_csp_p95_ms,"
                      "missing_hub_timestamp,clock_skew").split(",")
    rows = [_as_expected(r) for r in _csv(out / "worst_hubs.csv")]
    # HUB_FEW (5 alerts) is below the default --min-alerts 20; the ordinary hubs by their p95
    assert rows[0] == _expected_hub(alerts, HUB_LATE, 1)
    assert rows[0]["hub_to_csp_p95_ms"] < 80_000 and rows[0]["missing_hub_timestamp"] == 2  # type: ignore[operator]
    assert [r["comms_hub_id"] for r in rows] == [HUB_LATE, 2_000_000_012, 2_000_000_011, 2_000_000_010]
    assert rows[1] == _expected_hub(alerts, 2_000_000_012, 2) and rows[1]["clock_skew"] == 2

    out = tmp_path / "few"
    _drill_report(data_dir, out, "--min-alerts", "5", "--top", "2")
    rows = [_as_expected(r) for r in _csv(out / "worst_hubs.csv")]
    assert rows == [_expected_hub(alerts, HUB_FEW, 1), _expected_hub(alerts, HUB_LATE, 2)]


def test_worst_hubs_limits_must_be_whole_and_positive(drill: tuple[Path, list[_Alert]], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, _ = drill
    for flag, value in (("--top", "0"), ("--min-alerts", "x")):
        with pytest.raises(SystemExit) as exc:
            report.main(["--data-dir", str(data_dir), "--month", "2023-06", "--out", str(tmp_path), flag, value])
        assert exc.value.code == 2
        assert flag in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least 1"):
        report.worst_hubs_sql("2023-06", min_alerts=0)


def test_hub_narrows_every_output_and_lists_its_alerts(drill: tuple[Path, list[_Alert]], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, alerts = drill
    mine = [a for a in alerts if a.hub == HUB_LATE]
    out = tmp_path / "hub"
    _drill_report(data_dir, out, "--hub", str(HUB_LATE))
    assert str(out / "alerts.csv") in capsys.readouterr().out
    listed = _csv(out / "alerts.csv")
    assert list(listed[0]) == ["response_id", "delivery_id", "dsp_received", "service_user_id", "comms_hub_id",
                               "region", "category", "alert_code", "dcc_alert_code", "status",
                               "missing_hub_timestamp", "clock_skew", "hub_to_csp_ms", "csp_to_dsp_ms",
                               "dsp_to_su_ms", "su_handshake_ms", "end_to_end_ms"]
    assert [r["response_id"] for r in listed] == [f"resp-{a.did}" for a in mine]  # in time order
    assert (listed[0]["status"], listed[0]["su_handshake_ms"]) == ("no_handshake", "")  # A's d000
    second = listed[1]
    assert (second["dsp_received"], second["comms_hub_id"], second["service_user_id"], second["status"],
            second["hub_to_csp_ms"], second["su_handshake_ms"]) == (
        format_iso(mine[1].dsp), str(HUB_LATE), mine[1].su, "complete", str(mine[1].chf), str(mine[1].handshake))
    assert [r["status"] for r in listed].count("throttled") == 1
    [summary] = _csv(out / "summary.csv")
    assert summary["alerts"] == str(len(mine)) and summary["rejected"] == ""  # window counts name no hub
    assert [r["alerts"] for r in _csv(out / "by_region.csv")] == [str(len(mine))]
    assert [_as_expected(r) for r in _csv(out / "worst_hubs.csv")] == [_expected_hub(alerts, HUB_LATE, 1)]
    rows = {r["service_user_id"]: _as_expected(r) for r in _csv(out / "by_service_user.csv")}
    assert rows == {su: _expected_service_user(mine, su) for su in (SU_A, SU_B, SU_SLOW)}
    assert {r["region"] for r in _csv(out / "operational_metrics.csv")} == {"north", "all"}
    assert f"Comms Hub {HUB_LATE}" in (out / "index.html").read_text(encoding="utf-8")


def test_service_user_narrows_every_output(drill: tuple[Path, list[_Alert]], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, alerts = drill
    mine = [a for a in alerts if a.su == SU_SLOW]
    out = tmp_path / "su"
    _drill_report(data_dir, out, "--service-user", SU_SLOW, "--min-alerts", "1")
    assert [r["delivery_id"] for r in _csv(out / "alerts.csv")] == [a.did for a in mine]
    assert [_as_expected(r) for r in _csv(out / "by_service_user.csv")] == [_expected_service_user(mine, SU_SLOW)]
    hubs = [_as_expected(r) for r in _csv(out / "worst_hubs.csv")]
    assert hubs[0]["comms_hub_id"] == HUB_FEW  # of SU_SLOW's alerts, HUB_FEW's are the latest
    assert sum(int(h["alerts"]) for h in hubs) == len(mine)  # type: ignore[call-overload]
    assert _csv(out / "summary.csv")[0]["alerts"] == str(len(mine))

    # without narrowing there is no listing; nobody's alerts: said, exit 1; --sat cannot be narrowed
    plain = tmp_path / "plain"
    _drill_report(data_dir, plain)
    assert not (plain / "alerts.csv").exists()
    capsys.readouterr()
    assert report.main(["--data-dir", str(data_dir), "--from", DRILL_FROM, "--to", DRILL_TO, "--out",
                        str(tmp_path / "none"), "--hub", "7", "--quiet"]) == 1
    assert "Comms Hub 7" in capsys.readouterr().err
    sat = tmp_path / "sat.csv"
    sat.write_text("response_id,time\n")
    assert report.main(["--data-dir", str(data_dir), "--month", "2023-06", "--out", str(tmp_path / "s"),
                        "--sat", str(sat), "--service-user", SU_A, "--quiet"]) == 2
    assert "cannot be narrowed" in capsys.readouterr().err

"""Pure parts of the dashboard and its PDF: the distribution outline, the readings of the Service
Users and worst hubs, the Chromium command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from alert_timing.dashboard import CHARTS, build_dashboard, service_user_reading, step_outline, worst_hubs_reading
from alert_timing.pdf import CHROMIUM_FLAGS, PdfError, chromium_command, print_pdf


def test_contiguous_bins_are_one_flat_top_each_closed_at_zero() -> None:
    xs, ys = step_outline([1.0, 2.0], [2.0, 4.0], [3.0, 5.0])
    assert list(zip(xs, ys, strict=True)) == [(1.0, 0.0), (1.0, 3.0), (2.0, 3.0), (2.0, 5.0), (4.0, 5.0), (4.0, 0.0)]


def test_a_gap_between_bins_drops_to_zero() -> None:
    # bins 1-2 and 8-16: the empty bins between them are drawn at zero, not as a line from 2 to 8
    xs, ys = step_outline([1.0, 8.0], [2.0, 16.0], [4.0, 6.0])
    assert list(zip(xs, ys, strict=True)) == [
        (1.0, 0.0), (1.0, 4.0), (2.0, 4.0), (2.0, 0.0), (8.0, 0.0), (8.0, 6.0), (16.0, 6.0), (16.0, 0.0)]
    between = [y for x, y in zip(xs, ys, strict=True) if 2.0 < x < 8.0]
    assert between == []  # nothing drawn inside the gap but the zero line from (2, 0) to (8, 0)


def test_rounded_edges_of_neighbouring_bins_are_not_a_gap() -> None:
    xs, ys = step_outline([0.0, 1.0, 1.122], [1.0, 1.122, 1.259], [2.0, 2.0, 2.0], floor=0.5)
    assert 0.0 not in ys[1:-1]
    assert xs[0] == 0.5  # a zero-width first bin starts at the floor on a log axis


def test_no_bins_no_line() -> None:
    assert step_outline([], [], []) == ([], [])


def test_leg_chart_drops_to_zero_in_the_page(tmp_path: Path) -> None:
    data = {"latency_histogram": {"leg": ["su_handshake_ms"] * 2, "ms_from": [5000.0, 30000.0],
                                  "ms_to": [5623.413, 33496.544], "count": [10, 10]}}
    page = build_dashboard(data, tmp_path / "index.html").read_text(encoding="utf-8")
    assert all(f'id="chart-{name}"' in page for name in CHARTS)
    flat = page.replace(" ", "")
    assert ('"x":[5000.0,5000.0,5623.413,5623.413,30000.0,30000.0,33496.544,33496.544],'
            '"y":[0.0,50.0,50.0,0.0,0.0,50.0,50.0,0.0]') in flat


def test_chromium_command_prints_with_a_throwaway_profile(tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    command = chromium_command("/usr/bin/chromium", tmp_path / "profile", page, tmp_path / "report.pdf")
    assert command[0] == "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"):
        assert flag in CHROMIUM_FLAGS and flag in command
    assert f"--user-data-dir={tmp_path / 'profile'}" in command
    assert f"--print-to-pdf={tmp_path / 'report.pdf'}" in command
    assert command[-1] == page.resolve().as_uri()


def test_missing_chromium_is_a_clear_error(tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    page.write_text("<html></html>", encoding="utf-8")
    with pytest.raises(PdfError, match="cannot run Chromium"):
        print_pdf(page, tmp_path / "report.pdf", chromium=str(tmp_path / "no-such-chromium"))
    assert not (tmp_path / "report.pdf").exists()


WHO = {
    "by_service_user": {"service_user_id": ["SU-SLOW", "SU-A", "SU-B"], "alerts": [40, 1200, 30],
                        "su_handshake_p50_ms": [40100.0, 300.0, None], "su_handshake_p95_ms": [40900.5, 31000.0, None],
                        "su_handshake_p99_ms": [41000.0, 32000.0, None], "share_within_target": [0.0, 0.9425, None]},
    "worst_hubs": {"rank": [1, 2, 3], "comms_hub_id": [2000000001, 17, 18], "region": ["north", "south", "central"],
                   "alerts": [27, 22, 22], "hub_to_csp_p50_ms": [20149.5, 600.0, 500.0],
                   "hub_to_csp_p95_ms": [20284.05, 800.0, 700.0], "missing_hub_timestamp": [2, 0, 1],
                   "clock_skew": [0, 2, 0]},
}


def test_readings_name_the_slowest_service_user_and_the_worst_hub() -> None:
    assert service_user_reading(WHO, 30_000) == (
        "Slowest Service User: SU-SLOW, handshake p95 40,900 ms over 40 alerts, 0.0 % within target; "
        "2 of 2 Service Users have a handshake p95 above the 30,000 ms target.")  # SU-B: no handshake measured
    assert service_user_reading(WHO, None).endswith("2 Service Users in all (no handshake target set).")
    assert worst_hubs_reading(WHO) == (
        "Worst Comms Hub: 2000000001 (north), Comms Hub → CSP p95 20,284 ms over 27 alerts; of the 3 hubs listed, "
        "2 sent alerts without HubTimestamp and 1 showed clock skew.")
    assert "No Comms Hub" in worst_hubs_reading({}) and "No Service User" in service_user_reading({}, 30_000)


def test_who_sections_in_the_page(tmp_path: Path) -> None:
    page = build_dashboard(WHO, tmp_path / "index.html", handshake_target_ms=30_000,
                           handshake_target_varies=True).read_text(encoding="utf-8")
    assert "Where the time goes: Service Users and Comms Hubs" in page
    assert "Slowest Service User: SU-SLOW" in page and "Worst Comms Hub: 2000000001 (north)" in page
    assert "target 30,000 ms (default; varies by region or category)" in page
    assert page.index('id="chart-slowest-service-users"') < page.index('id="chart-worst-hubs"')

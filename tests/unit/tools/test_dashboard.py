"""Pure parts of the dashboard and its PDF: the distribution outline, the Chromium command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from alert_timing.dashboard import CHARTS, build_dashboard, step_outline
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

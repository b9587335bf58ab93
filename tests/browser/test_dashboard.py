"""The Q&A dashboard rendered by a real headless Chromium: every chart draws, no script errors,
nothing fetched from the network; a screenshot is kept for people to look at; ``report --pdf``
prints it to a PDF that opens with its pages and title."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest
from pypdf import PdfReader

from alert_timing import report
from alert_timing.dashboard import CHARTS
from services.metrics.core import MetricsCore
from services.metrics.files import write_window
from tests.harness.metrics_events import ack, exp, tick

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars", f"--user-data-dir={profile}",
         "--virtual-time-budget=10000", *args],
        capture_output=True, text=True, timeout=120,
    )


SERVICE_USERS = ("90-B3-D5-1F-30-01-00-00", "90-B3-D5-1F-30-02-00-00", "90-B3-D5-1F-30-03-00-00",
                 "90-B3-D5-1F-30-0A-00-00")
PERIOD = ["--from", "2023-06-01T10:00:00Z", "--to", "2023-06-01T12:00:00Z"]
TITLE = "Alert throughput timing, 2023-06-01T10:00:00.000Z to 2023-06-01T12:00:00.000Z"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two hours of alerts over three regions, with a storm, timeouts and a missing hub timestamp,
    from four Service Users (the last one slow to acknowledge) and twelve Comms Hubs."""
    rng = random.Random(9)
    data_dir = tmp_path_factory.mktemp("data")
    core = MetricsCore()
    events: list[object] = []
    codes = ["8F3F", "810D", "8F0F", "8F72", "8F57"]
    for i in range(600):
        second = i * 12 if not 200 <= i < 320 else 2400 + (i - 200) * 2  # a burst around 10:40
        hh, rest = divmod(second, 3600)
        mm, ss = divmod(rest, 60)
        dcc = i % 7 == 0
        e = exp(f"a{i:04d}", f"{10 + hh:02d}:{mm:02d}:{ss:02d}.{rng.randint(0, 999):03d}",
                region=("north", "central", "south")[i % 3], category="dcc_alert" if dcc else "device_alert",
                dcc="N53" if dcc else None, code=codes[i % len(codes)], chf=None if i % 17 == 0 else "-500")
        su = SERVICE_USERS[i % len(SERVICE_USERS)]
        events.append(msgspec.structs.replace(e, service_user_id=su, comms_hub_id=1_000_000_000 + i % 12))
        if i % 23:  # every 23rd never acknowledged
            handshake = rng.randint(50, 900) + (40_000 if su == SERVICE_USERS[-1] else 0)
            slow = 4_000 if 200 <= i < 320 else 0  # the storm is slow too
            attempt = ack(e, 500 + rng.randint(20, 400) + handshake + rng.randint(0, 2_000) + slow,
                          handshake=handshake)
            events.append(msgspec.structs.replace(attempt, service_user_id=su))
    events.append(tick("12:30:00.000"))
    for closed in core.apply(events).closed:
        write_window(data_dir, closed)
    return data_dir


@pytest.fixture(scope="module")
def dashboard(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert report.main(["--data-dir", str(data_dir), *PERIOD, "--out", str(out), "--quiet"]) == 0
    return out / "index.html"


def test_self_contained(dashboard: Path) -> None:
    text = dashboard.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", text), "scripts must be inlined"
    assert "cdn.plot.ly" not in text.split("</script>")[-1]
    assert all(f'id="chart-{name}"' in text for name in CHARTS)


def test_charts_draw_in_headless_chromium(dashboard: Path, tmp_path: Path) -> None:
    binary = _chromium()
    if binary is None:
        pytest.skip("Chromium is not installed (expected at /usr/bin/chromium; `make` installs it)")
    url = dashboard.as_uri()
    dom = _run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    body = re.search(r"<body([^>]*)>", html)
    assert body, html[:500]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("data-errors") == "0", attrs.get("data-error-text")
    assert attrs.get("data-charts") == str(len(CHARTS))
    assert attrs.get("data-charts-drawn") == str(len(CHARTS))
    placed = sorted((html.index(f'id="chart-{name}"'), name) for name in CHARTS)
    ends = [start for start, _ in placed[1:]] + [len(html)]
    for (start, name), end in zip(placed, ends, strict=True):
        assert 'class="main-svg"' in html[start:end], f"chart {name} did not draw"
    # the two sections on who: headed, read in one line each, drawn
    section = html[html.index('class="drilldown"'):]
    assert "Where the time goes: Service Users and Comms Hubs" in section
    assert f"Slowest Service User: {SERVICE_USERS[-1]}" in section and "Worst Comms Hub: 10000000" in section
    assert 'id="chart-slowest-service-users"' in section and 'id="chart-worst-hubs"' in section
    assert "Slowest Service Users: handshake" in section and "missing HubTimestamp" in section  # drawn SVG text

    shot = tmp_path / "dashboard.png"
    result = _run_chromium(binary, tmp_path / "profile-shot", "--window-size=1400,3700", f"--screenshot={shot}", url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    keep = REPO / "var" / "screenshots" / "dashboard.png"
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, keep)


def test_report_pdf_printed_by_headless_chromium(data_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    if _chromium() is None:
        pytest.skip("Chromium is not installed (expected at /usr/bin/chromium; `make` installs it)")
    out = tmp_path / "out"
    assert report.main(["--data-dir", str(data_dir), *PERIOD, "--out", str(out), "--quiet", "--pdf"]) == 0
    assert str(out / "report.pdf") in capsys.readouterr().out
    assert f"<title>{TITLE}</title>" in (out / "index.html").read_text(encoding="utf-8")
    pdf = PdfReader(out / "report.pdf")
    assert pdf.metadata is not None and pdf.metadata.title == TITLE
    assert len(pdf.pages) >= 4  # summary, ten charts and the operational section do not fit on fewer
    text = " ".join(page.extract_text() for page in pdf.pages)
    for expected in ("Q&A dashboard", "Operational metrics: share within target", "ILLUSTRATIVE",
                     "Worst 15-minute windows", "Share of alerts within target",
                     "Where the time goes: Service Users and Comms Hubs", f"Slowest Service User: {SERVICE_USERS[-1]}",
                     "Slowest Service Users: handshake", "Worst Comms Hub: 10000000", "Worst Comms Hubs",
                     "missing HubTimestamp"):
        assert expected in text, expected
    keep = REPO / "var" / "screenshots" / "report.pdf"
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "report.pdf", keep)

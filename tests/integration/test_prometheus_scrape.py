"""A real Prometheus server scraping a running pipeline.

nats-server, the four services (each serving its OpenTelemetry metrics on a loopback port,
ALERT_TIMING_PROMETHEUS_PORT) and Prometheus (Debian package `prometheus`, installed by
`make test`) on free loopback ports with temporary stores. After a simulated run, the
PromQL an operator uses (the dashboard's and the rules') answers with the figures the AST
records give: records per second within the scrape's resolution, leg percentiles within the
histogram's bucket, counts exactly. The alert rules load and evaluate without error.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import nats
import pytest
import yaml

from alert_timing.nats_server import EmbeddedNats, free_port
from alert_timing.simulator.run import run_traffic
from alert_timing.simulator.traffic import TrafficConfig
from alert_timing.supervisor import Supervisor, run_bootstrap
from shared import subjects as s
from shared.eventlog import read_messages
from shared.events import LEGS
from shared.settings import Settings, load
from shared.telemetry.metrics import HANDSHAKE_BUCKETS_MS, HISTOGRAMS, LEG_BUCKETS_MS, LEVELS, PROMETHEUS_NAMES

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "alert-timing.json"

#: Scrape interval and timeout. A busy metrics process takes up to a second to answer a
#: scrape on this 2-core machine (its thread shares the interpreter with the work).
SCRAPE_S = 2.0
ALERTS = 2_700
RATE = 150.0  # inputs per second: about eighteen seconds of traffic
WINDOW_S = 12  # the rate query's range
#: Bound on the time from JetStream storing a record to the metrics service counting it
#: (after the batch's publish is acknowledged: one round trip for up to 512 records).
PUBLISH_S = 1.5


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail("prometheus is not installed: `make test` installs it (Debian package prometheus)")
    return found


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen
    at: float | None = None  # queries are evaluated then, unless told (None: now)

    def get(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr}
        at = at if at is not None else self.at
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.get("/api/v1/query", **params)["result"]

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        result = self.query(expr, at)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait(self, what: str, ok, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not ok():
            assert self.process.poll() is None, "prometheus exited"
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus: {what} did not happen within {timeout} s")
            time.sleep(0.25)


@dataclass
class Run:
    prometheus: Prometheus
    settings: Settings
    records: list[tuple[float, dict]]  # (JetStream store time, record) of every ast.record message
    reports: list[dict]  # every ast.report.15m message
    rejected: list[str]  # the subject of every ast.rejected.<stage> message


def start_prometheus(root: Path, targets: dict[str, int]) -> Prometheus:
    port = free_port()
    config = {
        "global": {"scrape_interval": f"{int(SCRAPE_S * 1000)}ms", "scrape_timeout": f"{int(SCRAPE_S * 1000)}ms",
                   "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        # one job per service, as the collector labels each service's series (job = service.name)
        "scrape_configs": [{"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]}
                           for name, p in targets.items()],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(root / "prometheus.log", "ab")  # the child keeps it
    process = subprocess.Popen(
        [prometheus_binary(), f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=log)
    prom = Prometheus(f"http://127.0.0.1:{port}", process)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    prom.wait("ready", ready, timeout=30)
    return prom


async def read_outputs(settings: Settings) -> tuple[list[tuple[float, dict]], list[dict], list[str]]:
    nc = await nats.connect(settings.nats_url)
    records: list[tuple[float, dict]] = []
    reports: list[dict] = []
    rejected: list[str] = []
    try:
        async for msgs in read_messages(nc, s.STREAM_OUT, [s.RECORD, s.REPORT_15M], 1):
            for m in msgs:
                if m.subject == s.RECORD:
                    records.append((m.metadata.timestamp.timestamp(), msgspec.json.decode(m.data)))
                else:
                    reports.append(msgspec.json.decode(m.data))
        async for msgs in read_messages(nc, s.STREAM_EVENTS, [s.rejected("*")], 1):
            rejected.extend(m.subject for m in msgs)
    finally:
        await nc.close()
    return records, reports, rejected


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("prometheus-scrape")
    server = EmbeddedNats(root / "jetstream", log_file=root / "nats-server.log").start()
    sup: Supervisor | None = None
    prom: Prometheus | None = None
    try:
        data_dir = root / "data"
        settings = load(nats_url=server.url, data_dir=str(data_dir))
        run_bootstrap(settings)
        ports = {name: free_port() for name in s.SERVICES}
        sup = Supervisor(settings, data_dir, server.url)
        for name, port in ports.items():
            sup.start_service(name, 0, ALERT_TIMING_PROMETHEUS_PORT=str(port))
        prom = start_prometheus(root, ports)
        prom.wait("every service scraped", lambda: len(prom.query("up == 1")) == len(ports))
        config = TrafficConfig(alerts=ALERTS, seed=7, malformed_share=0.01, span_ms=4 * 3_600_000)
        result = asyncio.run(run_traffic(settings, config, rate=RATE, wait_s=180, show=False))
        assert result.complete, "not every record and window report came out"
        records, reports, rejected = asyncio.run(read_outputs(settings))
        # Until Prometheus has scraped the counters' final values (each service is scraped on
        # its own schedule: hub-capture's last rejection may reach it after metrics' last
        # record); the figures are read as of then (a later scrape may time out, and an
        # instant query then sees nothing).
        moment: dict[str, float] = {}

        def scraped() -> bool:
            moment["at"] = at = time.time()
            return (prom.scalar("sum(alert_timing_records_total)", at) == len(records)
                    and prom.scalar("sum(alert_timing_messages_rejected_total)", at) == len(rejected))

        prom.wait("the last record and rejection scraped", scraped)
        prom.at = moment["at"]
        assert not sup.check(), f"services died: {sup.check()}"
        yield Run(prom, settings, records, reports, rejected)
    finally:
        if prom is not None:
            prom.process.terminate()
            try:
                prom.process.wait(15)
            except subprocess.TimeoutExpired:
                prom.process.kill()
                prom.process.wait()
        if sup is not None:
            sup.stop()
        server.stop()


def count_between(times: list[float], start: float, end: float) -> int:
    return sum(1 for t in times if start < t <= end)


def test_records_per_second_is_what_the_records_say(run: Run) -> None:
    """`sum(rate(alert_timing_records_total[8s]))` at moments inside the run, against the
    ast.record messages JetStream stored in that range.

    Prometheus reads the counter at each scrape (its samples in the range: first at t0, last
    at t1) and extrapolates the increase to the whole range, by a factor between 1 and
    range/(t1 - t0): the rate lies between increase/range and increase/(t1 - t0). The increase
    is the records counted between t0 and t1; a record is counted once JetStream has stored it
    (at most PUBLISH_S later), so the increase lies between the records stored in
    (t0, t1 - PUBLISH_S] and those stored in (t0 - PUBLISH_S, t1]."""
    times = sorted(t for t, _ in run.records)
    first, last = times[0], times[-1]
    assert last - first > WINDOW_S + 2, f"the run was too short to measure a rate: {last - first:.1f} s"
    checked = 0
    at = first + WINDOW_S + 1.0  # the counter exists before the range starts
    while at <= last:
        rate = run.prometheus.scalar(f"sum(rate(alert_timing_records_total[{WINDOW_S}s]))", at)
        if rate is None:  # fewer than two scrapes answered in the range: nothing to say
            at += 1.0
            continue
        series = run.prometheus.query(f"alert_timing_records_total[{WINDOW_S}s]", at)
        t0 = min(float(v[0][0]) for v in (r["values"] for r in series))
        t1 = max(float(v[-1][0]) for v in (r["values"] for r in series))
        # a series born inside the range: Prometheus never saw it at 0, so its first value is not
        # in the increase
        unseen = sum(float(r["values"][0][1]) for r in series if float(r["values"][0][0]) > t0)
        low = (count_between(times, t0, t1 - PUBLISH_S) - unseen) / WINDOW_S
        high = count_between(times, t0 - PUBLISH_S, t1) / (t1 - t0)
        assert low * (1 - 1e-9) <= rate <= high * (1 + 1e-9), (round(at - first, 1), rate, low, high)
        checked += 1
        at += 1.0
    assert checked >= 2
    # and over the whole run, exactly
    assert run.prometheus.scalar("sum(alert_timing_records_total)") == len(run.records)
    by_status = {r["metric"]["status"]: float(r["value"][1])
                 for r in run.prometheus.query("sum by (status) (alert_timing_records_total)")}
    want: dict[str, float] = {}
    for _, record in run.records:
        want[record["status"]] = want.get(record["status"], 0) + 1
    assert by_status == want


def bucket_of(value: float, buckets: tuple[int, ...] = LEG_BUCKETS_MS) -> tuple[float, float]:
    """The histogram bucket (lower, upper] that holds ``value``."""
    bounds = [-math.inf, *buckets, math.inf]
    for lower, upper in itertools.pairwise(bounds):
        if lower < value <= upper:
            return lower, upper
    raise AssertionError(value)


def exact_quantile(values: list[int], q: float) -> int:
    """The ceil(q·n)-th smallest value: the one whose bucket histogram_quantile interpolates in."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def leg_values(run: Run, leg: str, **match: str) -> list[int]:
    """A leg over every complete record published (what the histogram counts; clock skew out)."""
    return [r[leg] for _, r in run.records
            if r["status"] == "complete" and r[leg] is not None and r[leg] >= 0
            and all(r[k] == v for k, v in match.items())]


@pytest.mark.parametrize("q", [0.5, 0.99])
@pytest.mark.parametrize("leg", LEGS)
def test_leg_quantile_is_the_records_quantile_within_a_bucket(run: Run, leg: str, q: float) -> None:
    values = leg_values(run, leg)
    assert len(values) > 100
    got = run.prometheus.scalar(
        f'histogram_quantile({q}, sum by (le) (alert_timing_leg_milliseconds_bucket{{leg="{leg}"}}))')
    assert got is not None
    lower, upper = bucket_of(got)
    exact = exact_quantile(values, q)
    assert lower < exact <= upper, (leg, q, got, exact, (lower, upper))
    assert run.prometheus.scalar(f'sum(alert_timing_leg_milliseconds_count{{leg="{leg}"}})') == len(values)


def test_p99_by_region_and_category(run: Run) -> None:
    """The dashboard's split: one p99 per (region, category) the records have."""
    result = run.prometheus.query('histogram_quantile(0.99, sum by (le, region, category) '
                                  '(alert_timing_leg_milliseconds_bucket{leg="end_to_end_ms"}))')
    got = {(r["metric"]["region"], r["metric"]["category"]): float(r["value"][1]) for r in result}
    groups = {(r["region"], r["category"]) for _, r in run.records if r["status"] == "complete"}
    assert set(got) == groups and len(groups) >= 4
    for (region, category), value in got.items():
        values = leg_values(run, "end_to_end_ms", region=region, category=category)
        lower, upper = bucket_of(value)
        assert lower < exact_quantile(values, 0.99) <= upper, (region, category, value)


def test_handshake_p95_by_service_user_is_the_records_within_a_bucket(run: Run) -> None:
    """The slowest-Service-Users figure: one series per Service User the complete records
    name (no other label of the records: never a hub), its p95 in the bucket of the records'
    p95, its count exactly theirs."""
    by_user: dict[str, list[int]] = {}
    for _, r in run.records:
        if r["status"] == "complete" and r["su_handshake_ms"] is not None and r["su_handshake_ms"] >= 0:
            by_user.setdefault(r["service_user_id"], []).append(r["su_handshake_ms"])
    assert len(by_user) >= 2 and sum(map(len, by_user.values())) > 100
    result = run.prometheus.query('histogram_quantile(0.95, sum by (le, service_user_id) '
                                  '(alert_timing_handshake_milliseconds_bucket))')
    got = {r["metric"]["service_user_id"]: float(r["value"][1]) for r in result}
    assert set(got) == set(by_user)
    for user, value in got.items():
        lower, upper = bucket_of(value, HANDSHAKE_BUCKETS_MS)
        assert lower < exact_quantile(by_user[user], 0.95) <= upper, (user, value)
    counts = {r["metric"]["service_user_id"]: float(r["value"][1]) for r in run.prometheus.query(
        "sum by (service_user_id) (alert_timing_handshake_milliseconds_count)")}
    assert counts == {user: len(values) for user, values in by_user.items()}
    labels = {k for r in run.prometheus.query("alert_timing_handshake_milliseconds_count") for k in r["metric"]}
    assert not labels & {"comms_hub_id", "leg", "region", "category", "delivery_id"}, labels


def test_rejections_and_windows_counted_exactly(run: Run) -> None:
    """Every counter against what JetStream holds: one rejection counted per ast.rejected.<stage>
    message, by the stage that published it."""
    assert run.rejected, "the run's malformed inputs published no rejection"
    by_service = {r["metric"]["service"]: float(r["value"][1])
                  for r in run.prometheus.query("sum by (service) (alert_timing_messages_rejected_total)")}
    want = Counter(subject.removeprefix(f"{s.REJECTED}.") for subject in run.rejected)
    assert {service: n for service, n in by_service.items() if n} == want
    assert run.prometheus.scalar("sum(alert_timing_messages_rejected_total)") == len(run.rejected)
    closed = sum(1 for r in run.reports if r["revision"] == 1)
    revised = len(run.reports) - closed
    assert run.prometheus.scalar("sum(alert_timing_windows_closed_total)") == closed > 0
    assert run.prometheus.scalar("sum(alert_timing_windows_revised_total)") == revised
    assert run.prometheus.scalar("sum(alert_timing_dead_letters_total)") == 0  # exported from the start, at 0
    starts = run.prometheus.query("alert_timing_process_start_time_seconds")
    assert {r["metric"]["service"] for r in starts} == set(s.SERVICES)


def test_every_exported_name_is_the_documented_one(run: Run) -> None:
    names = set(run.prometheus.get("/api/v1/label/__name__/values"))
    ours = {n for n in names if n.startswith("alert_timing_")}
    documented = set(PROMETHEUS_NAMES.values())
    for histogram in (PROMETHEUS_NAMES[h] for h in HISTOGRAMS):
        documented |= {f"{histogram}_bucket", f"{histogram}_count", f"{histogram}_sum"}
        documented.discard(histogram)
    assert ours <= documented, ours - documented
    # everything but the counters that have nothing to count in a clean run, and the delivery
    # gauges (this run does not deliver to DS&A: ALERT_TIMING_DELIVERY_URL is unset)
    quiet = {PROMETHEUS_NAMES["alert_timing.batches.retried"], PROMETHEUS_NAMES["alert_timing.metrics.rebuild_gaps"],
             *(PROMETHEUS_NAMES[name] for name in LEVELS)}
    assert documented - quiet <= ours, documented - quiet - ours


def test_rules_load_and_evaluate(run: Run) -> None:
    groups = run.prometheus.get("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {g["file"] for g in groups} == {str(RULES)}
    assert len(rules) == len(yaml.safe_load(RULES.read_text())["groups"][0]["rules"]) + sum(
        len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"][1:])
    assert all(rule["health"] == "ok" for rule in rules), [r for r in rules if r["health"] != "ok"]
    # a healthy run pages nobody
    firing = [a for a in run.prometheus.get("/api/v1/alerts")["alerts"] if a["state"] == "firing"]
    assert firing == []


def test_dashboard_queries_run(run: Run) -> None:
    """Every query of the Grafana dashboard is valid PromQL on the scraped series, and the
    throughput, leg and slowest-Service-Users panels show data."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    end = run.prometheus.at
    empty = []
    for expr in exprs:
        concrete = expr.replace("$__rate_interval", f"{WINDOW_S}s").replace("$leg", "end_to_end_ms")
        if not run.prometheus.query(concrete, at=end):
            empty.append(concrete)
    kinds = ("records_total", "leg_milliseconds_bucket", "handshake_milliseconds_bucket")
    shown = [e for e in exprs if any(k in e for k in kinds)]
    assert shown and not [e for e in empty if any(k in e for k in kinds)], empty


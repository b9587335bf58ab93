"""deploy/prometheus and deploy/grafana: the alert rules pass the real promtool (Debian package
`prometheus`, installed by `make test`), every alert has unit tests that fire it and keep it
quiet, and those tests fail when the rule is broken; the rules and the dashboard use only
the metric names the services export; the committed dashboard JSON is what its generator
writes."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from shared.events import LEGS
from shared.targets import CATEGORIES, load_targets
from shared.telemetry.metrics import HANDSHAKE_BUCKETS_MS, HISTOGRAMS, PROMETHEUS_NAMES

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts_test.yml"
GENERATOR = REPO / "deploy" / "grafana" / "dashboard.py"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "alert-timing.json"

#: What the issue asks the rules to watch, by alert name.
ALERTS = {
    "AlertTimingConsumerLagGrowing",  # consumer lag growing
    "AlertTimingNoRecords",  # no ast.record for 15 minutes while inputs arrive
    "AlertTimingRejectedShareHigh",  # rejected share above a threshold
    "AlertTimingDeadLetter",  # any dead letter
    "AlertTimingWindowRevisionsStorm",  # window revisions storm
    "AlertTimingServiceRestartLoop",  # a service restarting in a loop
    "AlertTimingDeliveryBehind",  # window files not reaching the DS&A File Gateway
    "AlertTimingDeliveryQuarantined",  # a window set held: other content under its names at the gateway
    "AlertTimingLegP99AboveTarget",  # a leg's p99 above its target
    "AlertTimingServiceUserHandshakeP95AboveTarget",  # one Service User's handshake p95 above its target, 30 min
}


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: `make test` installs it (Debian package prometheus)")
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_checks_the_compose_prometheus_config() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_asked_for_exists_with_a_firing_and_a_quiet_case() -> None:
    assert {r["alert"] for r in rules() if "alert" in r} == ALERTS
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for alert in ALERTS:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: no case where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{alert}: no case where it stays quiet"


def with_expr(expr: str, into: Path) -> None:
    """A copy of the rules and their tests in ``into``, every alert's expression replaced."""
    config = yaml.safe_load(RULES.read_text())
    for group in config["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["expr"] = expr
    (into / RULES.name).write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(RULE_TESTS, into / RULE_TESTS.name)


@pytest.mark.parametrize("expr", ["vector(1) > 2", "vector(1)"], ids=["never-fires", "always-fires"])
def test_the_unit_tests_catch_a_broken_rule(expr: str, tmp_path: Path) -> None:
    """With alerts that never fire, each alert's firing case fails; with alerts that always
    fire, each one's quiet case fails: the tests say something about every rule."""
    with_expr(expr, tmp_path)
    done = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0
    failed = set(re.findall(r"alertname: (\w+), time:", done.stdout + done.stderr))
    assert failed == ALERTS, ALERTS - failed


# --------------------------------------------------------------------------- metric names


def exported_names() -> set[str]:
    names = set(PROMETHEUS_NAMES.values())
    for histogram in (PROMETHEUS_NAMES[h] for h in HISTOGRAMS):
        names = (names - {histogram}) | {f"{histogram}_bucket", f"{histogram}_count", f"{histogram}_sum"}
    return names


def referenced(expr: str) -> set[str]:
    """Metric names (ours and recording rules) an expression selects."""
    return set(re.findall(r"\balert_timing[a-z_:0-9]*", expr))


def test_rules_use_only_exported_names_and_their_own_records() -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    assert all(name.startswith("alert_timing:") for name in recorded)  # level:metric:operations
    for rule in rules():
        unknown = referenced(rule["expr"]) - exported_names() - recorded
        assert not unknown, (rule.get("alert") or rule.get("record"), unknown)
    # and every exported series is used by a rule or a dashboard panel
    used = set().union(*(referenced(r["expr"]) for r in rules()), *(referenced(e) for e in dashboard_exprs()))
    idle = exported_names() - used - {PROMETHEUS_NAMES["alert_timing.metrics.rebuild_gaps"],
                                      *(PROMETHEUS_NAMES[h] + "_sum" for h in HISTOGRAMS)}
    assert not idle, idle


def test_the_leg_targets_are_the_targets_files() -> None:
    """The leg p99 targets state the packaged targets file's figure for every leg and category
    (its by_category overrides included), so the live rule and `report` judge a leg alike."""
    stated = {}
    for rule in rules():
        if rule.get("record") == "alert_timing:leg_p99_target_milliseconds":
            labels = rule["labels"]
            value = re.fullmatch(r"vector\((\d+)\)", rule["expr"].strip())
            assert value, rule
            assert (labels["leg"], labels["category"]) not in stated, labels
            stated[labels["leg"], labels["category"]] = int(value.group(1))
    expected = {}
    for leg in load_targets().legs:
        assert not leg.by_region, leg  # the rule has no region-specific targets
        for category in CATEGORIES:
            expected[leg.leg, category] = leg.target_for("", category)
    assert stated == expected


def test_the_handshake_target_is_the_targets_files() -> None:
    """Prometheus cannot read the targets file: the rule states the handshake target of the
    packaged one (what `report` uses) and must say the same, at a bucket bound of the histogram
    (else a p95 at the target could not be told from one above it)."""
    [target] = [r for r in rules() if r.get("record") == "alert_timing:su_handshake_target_milliseconds"]
    assert "labels" not in target  # every Service User's
    stated = int(re.fullmatch(r"vector\((\d+)\)", target["expr"].strip()).group(1))  # type: ignore[union-attr]
    [leg] = [t for t in load_targets().legs if t.leg == "su_handshake_ms"]
    assert not leg.by_region and not leg.by_category  # one figure, as the rule has
    assert stated == leg.target_ms
    assert stated in HANDSHAKE_BUCKETS_MS


# --------------------------------------------------------------------------- Grafana


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("alert_timing_grafana_dashboard", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def test_committed_dashboard_is_what_the_generator_writes(tmp_path: Path) -> None:
    module = generator()
    assert module.main(["--check"]) == 0, "run: python deploy/grafana/dashboard.py"
    out = tmp_path / "board.json"
    assert module.main(["--out", str(out)]) == 0
    assert out.read_text() == DASHBOARD.read_text()
    stale = tmp_path / "stale.json"
    stale.write_text(DASHBOARD.read_text().replace("Consumer lag", "Consumer lagg"))
    assert module.main(["--check", "--out", str(stale)]) == 1


def test_dashboard_shows_what_operators_watch() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["leg"]["query"].split(",") == list(LEGS)
    panels = [p for p in board["panels"] if p["type"] != "row"]
    titles = [p["title"] for p in panels]
    assert len(set(titles)) == len(titles)
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids) and all(isinstance(i, int) for i in ids)
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], p["title"]
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])
    # the list: alerts in/out per second, legs p50/p99 by region and category,
    # consumer lag, rejected and dead letters, windows and revisions
    exprs = " ".join(dashboard_exprs())
    for needle in ('alert_timing_messages_in_total{service="hub-capture"}', "alert_timing_records_total",
                   "histogram_quantile(0.5, sum by (le, region, category)",
                   "histogram_quantile(0.99, sum by (le, region, category)", "alert_timing_consumer_pending",
                   "alert_timing_messages_rejected_total", "alert_timing_dead_letters_total",
                   "alert_timing_windows_closed_total", "alert_timing_windows_revised_total"):
        assert needle in exprs, needle
    # the slowest Service Users: their handshake p95 by Service User, with the rule's target line
    [slowest] = [p for p in panels if p["title"] == "slowest Service Users"]
    shown = [t["expr"] for t in slowest["targets"]]
    assert shown[0].startswith("topk(") and "histogram_quantile(0.95, sum by (le, service_user_id)" in shown[0]
    assert "alert_timing_handshake_milliseconds_bucket" in shown[0]
    assert "alert_timing:su_handshake_target_milliseconds" in shown
    recorded = {r["record"] for r in rules() if "record" in r}
    for expr in dashboard_exprs():
        assert not referenced(expr) - exported_names() - recorded, expr
    # a 24-column grid without overlaps
    cells = set()
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))

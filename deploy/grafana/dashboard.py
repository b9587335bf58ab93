"""The operators' live Grafana dashboard for alert-timing, as code (grafana-foundation-sdk).

    python deploy/grafana/dashboard.py            # writes deploy/grafana/dashboards/alert-timing.json
    python deploy/grafana/dashboard.py --check    # exit 1 when the committed JSON is not current

Compose provisions the written JSON (deploy/grafana/provisioning). Every query uses the
Prometheus names of the services' OpenTelemetry metrics (shared/telemetry/metrics.PROMETHEUS_NAMES)
or the recording rules of deploy/prometheus/alerts.yml.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common, dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from shared.events import LEGS

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "dashboards" / "alert-timing.json"
UID = "alert-timing-live"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"


def query(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def panel(title: str, description: str, unit: str, *queries: prometheus.Dataquery,
          width: int = 12) -> timeseries.Panel:
    built = (timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
             .height(8).span(width).fill_opacity(10).line_width(1)
             .legend(common.VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.TABLE)
                     .placement(LegendPlacement.BOTTOM).calcs(["lastNotNull", "max"])))
    refs = "ABCDEFGH"
    for i, q in enumerate(queries):
        built = built.with_target(q.ref_id(refs[i]))
    return built


def leg_quantile(q: float) -> str:
    return (f"histogram_quantile({q}, sum by (le, region, category) "
            f'(rate(alert_timing_leg_milliseconds_bucket{{leg="$leg"}}[{RATE}])))')


#: Service Users the "slowest Service Users" panel shows.
SLOWEST = 10


def slowest_service_users() -> str:
    """The handshake p95 of the Service Users with the highest, over 5 minutes as the rule reads
    it (deploy/prometheus/alerts.yml, AlertTimingServiceUserHandshakeP95AboveTarget)."""
    return (f"topk({SLOWEST}, histogram_quantile(0.95, sum by (le, service_user_id) "
            "(rate(alert_timing_handshake_milliseconds_bucket[5m]))))")


def build() -> dashboard.Dashboard:
    legs = dashboard.CustomVariable("leg").label("Leg").values(",".join(LEGS)).current(
        _current("end_to_end_ms"))
    source = dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
    return (
        dashboard.Dashboard("alert-timing: live view")
        .uid(UID)
        .description("Alerts in and out, leg latencies, the slowest Service Users, consumer lag, rejections "
                     "and dead letters, 15-minute windows. Rules: deploy/prometheus/alerts.yml.")
        .tags(["alert-timing"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .editable()
        .with_variable(source)
        .with_variable(legs)
        .with_row(dashboard.Row("Throughput"))
        .with_panel(panel(
            "Alerts in and records out per second",
            "Inputs taken by hub-capture (CSP feeds) and AST records published on ast.record.",
            "reqps",
            query(f'sum(rate(alert_timing_messages_in_total{{service="hub-capture"}}[{RATE}]))', "alerts in"),
            query(f"sum(rate(alert_timing_records_total[{RATE}]))", "records out"),
            query(f'sum by (status) (rate(alert_timing_records_total[{RATE}]))', "records {{status}}")))
        .with_panel(panel(
            "Messages per second by service",
            "What each service takes from its durable consumer and publishes.",
            "reqps",
            query(f"sum by (service) (rate(alert_timing_messages_in_total[{RATE}]))", "{{service}} in"),
            query(f"sum by (service) (rate(alert_timing_messages_out_total[{RATE}]))", "{{service}} out")))
        .with_row(dashboard.Row("Legs ($leg)"))
        .with_panel(panel(
            "p50 by region and category",
            "Median of the leg over complete records (Prometheus histogram, bucket resolution).",
            "ms",
            query(leg_quantile(0.5), "{{region}} {{category}}")))
        .with_panel(panel(
            "p99 by region and category",
            "99th percentile of the leg; the line is its target (alert_timing:leg_p99_target_milliseconds).",
            "ms",
            query(leg_quantile(0.99), "{{region}} {{category}}"),
            query('alert_timing:leg_p99_target_milliseconds{leg="$leg"}', "target {{category}}")))
        .with_row(dashboard.Row("Backlog, rejections, dead letters"))
        .with_panel(panel(
            "Consumer lag",
            "Messages waiting in each durable consumer (read every 10 s by the services).",
            "short",
            query("max by (service, durable) (alert_timing_consumer_pending)", "{{service}} {{durable}}"),
            width=8))
        .with_panel(panel(
            "Rejected per second and share",
            "Inputs published to ast.rejected.<stage>, and their share of what the stage took.",
            "short",
            query(f"sum by (service) (rate(alert_timing_messages_rejected_total[{RATE}]))", "{{service}} /s"),
            query(f"sum by (service) (rate(alert_timing_messages_rejected_total[{RATE}])) "
                  f"/ sum by (service) (rate(alert_timing_messages_in_total[{RATE}]))", "{{service}} share"),
            width=8))
        .with_panel(panel(
            "Dead letters and retries (15 min)",
            "Messages copied to ast.dead-letter.<stage> after max_deliver, and batches retried.",
            "short",
            query("sum by (service, durable) (increase(alert_timing_dead_letters_total[15m]))",
                  "dead letters {{service}} {{durable}}"),
            query("sum by (service) (increase(alert_timing_batches_retried_total[15m]))", "retried {{service}}"),
            width=8))
        .with_row(dashboard.Row("Windows and processes"))
        .with_panel(panel(
            "Windows closed and revised (15 min)",
            "15-minute windows closed by event time, and revised reports for late data.",
            "short",
            query("sum(increase(alert_timing_windows_closed_total[15m]))", "closed"),
            query("sum(increase(alert_timing_windows_revised_total[15m]))", "revised")))
        .with_panel(panel(
            "Restarts (15 min)",
            "How often each service process started again.",
            "short",
            query("changes(alert_timing_process_start_time_seconds[15m])", "{{service}} {{instance}}")))
        .with_row(dashboard.Row("Delivery to DS&A"))
        .with_panel(panel(
            "Window file sets pending delivery",
            "Closed windows' files not yet at the DS&A File Gateway, per metrics partition.",
            "short",
            query("max by (partition) (alert_timing_delivery_pending_windows)", "partition {{partition}}")))
        .with_panel(panel(
            "Oldest pending delivery",
            "How long the oldest undelivered window file set has waited (the rule pages past 30 minutes).",
            "s",
            query("max by (partition) (alert_timing_delivery_oldest_pending_age_seconds)",
                  "partition {{partition}}")))
        .with_row(dashboard.Row("Service Users"))
        .with_panel(panel(
            "slowest Service Users",
            f"Handshake p95 over 5 minutes of the {SLOWEST} slowest Service Users (complete records; "
            "the rule warns when one stays above the target line for 30 minutes).",
            "ms",
            query(slowest_service_users(), "{{service_user_id}}"),
            query("alert_timing:su_handshake_target_milliseconds", "target"),
            width=24))
    )


def _current(value: str) -> dict:
    from grafana_foundation_sdk.models.dashboard import VariableOption

    return VariableOption(text=value, value=value, selected=True)


def render() -> str:
    board = json.loads(JSONEncoder(sort_keys=True).encode(build().build()))
    for number, item in enumerate(board["panels"], start=1):  # stable ids, in layout order
        item["id"] = number
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or check) the alert-timing Grafana dashboard JSON.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is not current")
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"where to write it (default {OUTPUT})")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is not current: run python deploy/grafana/dashboard.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`alert-timing`: one front door — run everything, run one service, simulate traffic,
ingest files, decode GBCS, report, and the operations commands."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Coroutine
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from alert_timing import gbcs_cli, ops, replay, report, soak
from alert_timing.ops.common import close, connect
from alert_timing.simulator.run import RunResult, run_traffic
from alert_timing.simulator.traffic import ILLUSTRATIVE_WHO, TrafficConfig
from alert_timing.sketch_check import compare, print_comparison
from alert_timing.supervisor import Supervisor, clear_data_dir, parse_replicas, run_bootstrap, wait_for_signal
from services.runtime.entry import Builder, serve
from shared import bus
from shared import settings as settings_mod
from shared import subjects as s
from shared.events import LEGS
from shared.telemetry.logging import setup_logging

T = TypeVar("T")

#: The services ``alert-timing service NAME`` runs (each also ``python -m services.<name>``).
SERVICE_BUILDERS = tuple(s.SERVICES)


def service_builder(name: str) -> Builder:
    """The one service's ``build``, importing that service only."""
    if name == s.HUB_CAPTURE:
        from services.hub_capture.app import build as hub_capture
        return hub_capture
    if name == s.CSP_ENRICHMENT:
        from services.csp_enrichment.app import build as csp_enrichment
        return csp_enrichment
    if name == s.DSP_MAPPING:
        from services.dsp_mapping.app import build as dsp_mapping
        return dsp_mapping
    if name == s.METRICS:
        from services.metrics.app import build as metrics
        return metrics
    raise ValueError(f"no service {name!r}")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _nats_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nats-url", help="NATS server URL(s), comma-separated (default: $NATS_URL)")


class Parser(argparse.ArgumentParser):
    """argparse, with a bad argument as one line (``alert-timing simulate: argument --alerts: ...``)
    instead of the usage block; ``--help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def share(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 up to (not including) 1, not {text}")
    return value


# --------------------------------------------------------------------------- commands


def cmd_service(args: argparse.Namespace) -> int:
    settings = settings_mod.load(nats_url=args.nats_url)
    setup_logging(args.name, settings.log_level)
    service = service_builder(args.name)(settings)  # a bad setting is one line before NATS is tried

    async def reachable() -> None:  # one line and exit 2 now, not reconnect attempts forever
        await close(await connect(settings, "service"))

    _run(reachable())
    return serve(service)  # as `python -m services.<name>` does


def cmd_bootstrap(args: argparse.Namespace) -> int:
    setup_logging("bootstrap")
    settings = settings_mod.load(nats_url=args.nats_url)
    for line in run_bootstrap(settings):
        print(line)
    return 0


def _traffic_config(args: argparse.Namespace) -> TrafficConfig:
    excluded = tuple(c.strip().upper() for c in args.storm_exclude.split(",") if c.strip())
    if any(len(c) != 4 or any(ch not in "0123456789ABCDEF" for ch in c) for c in excluded):
        raise ValueError(f"--storm-exclude {args.storm_exclude!r}: alert codes are 4 hex digits, comma-separated")
    if args.storm_period <= 0:
        raise ValueError("--storm-period must be positive")
    return TrafficConfig(
        alerts=args.alerts,
        seed=args.seed,
        malformed_share=args.malformed_share,
        duplicate_share=args.duplicate_share,
        span_ms=int(args.span_hours * 3_600_000),
        outage_share=args.outage_share,
        storm_period_ms=int(args.storm_period * 1000),
        storm_excluded_codes=excluded,
        **ILLUSTRATIVE_WHO,  # type: ignore[arg-type]
    )


def _simulate_args(p: argparse.ArgumentParser, default_alerts: int) -> None:
    p.add_argument("--alerts", type=positive_int, default=default_alerts, help="alerts to send (default %(default)s)")
    p.add_argument("--rate", type=positive_float, default=None, help="inputs per second (default: as fast as acked)")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same traffic")
    p.add_argument("--span-hours", type=positive_float, default=24.0,
                   help="event-time span of the traffic (default a day)")
    p.add_argument("--malformed-share", type=share, default=0.0, help="share of malformed inputs (e.g. 0.01)")
    p.add_argument("--duplicate-share", type=share, default=0.0, help="share of duplicated inputs (e.g. 0.05)")
    p.add_argument("--wait", type=positive_float, default=300.0,
                   help="seconds to wait for every record (default %(default)s); a run that cannot complete "
                        "(nothing moves and every stage is idle) stops earlier")
    p.add_argument("--outage-share", type=float, default=0.002,
                   help="CSP power-outage notifications per alert (DCC Alert AD1 when 3 min or more; "
                        "default %(default)s)")
    p.add_argument("--storm-period", type=float, default=300.0, metavar="S",
                   help="Alert Storm Protection: identical alerts from one device within S seconds of the one "
                        "forwarded are throttled (default %(default)s)")
    p.add_argument("--storm-exclude", default="8F35,8F36", metavar="CODES",
                   help="alert codes storm protection never throttles, comma-separated (default %(default)s; "
                        "illustrative: the DSP's own list is configuration)")


def print_summary(result: RunResult, seconds: float) -> None:
    traffic = result.traffic
    records = list(result.records.values())
    print()
    print(f"alerts in            {traffic.count('alert')}")
    print(f"service responses    {traffic.count('service_response')} (counted, passed over)")
    print(f"malformed / dups     {traffic.count('malformed')} / {traffic.count('duplicate')}")
    print(f"deliveries expected  {len(traffic.expected_deliveries)}")
    print(f"records out          {len(records)} (messages {result.record_messages})")
    by_status: dict[str, int] = {}
    for r in records:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    print(f"  by status          {', '.join(f'{k} {v}' for k, v in sorted(by_status.items()))}")
    print(f"throttled            {len(traffic.throttled)} (Alert Storm Protection)")
    print(f"outage notifications {traffic.count('outage')}")
    print(f"rejected             {result.rejected}")
    print(f"15-min reports       {len(result.reports)} windows")
    print(f"wall time            {seconds:.1f} s")
    print()
    print(f"{'leg (ms)':<18}{'count':>8}{'p50':>10}{'p95':>10}{'p99':>10}")
    for leg in LEGS:
        values = sorted(v for r in records if (v := getattr(r, leg)) is not None and v >= 0)
        if len(values) >= 2:
            q = statistics.quantiles(values, n=100, method="inclusive")
            print(f"{leg:<18}{len(values):>8}{q[49]:>10.0f}{q[94]:>10.0f}{q[98]:>10.0f}")
        else:
            print(f"{leg:<18}{len(values):>8}{'-':>10}{'-':>10}{'-':>10}")


def cmd_simulate(args: argparse.Namespace) -> int:
    setup_logging("simulator", "WARNING")
    settings = settings_mod.load(nats_url=args.nats_url)
    try:
        config = _traffic_config(args)
    except ValueError as exc:
        print(f"alert-timing simulate: {exc}", file=sys.stderr)
        return 2
    if args.scenario == "sit":
        return _simulate_sit(args, settings)
    started = time.perf_counter()
    result = _run(run_traffic(settings, config, rate=args.rate, wait_s=args.wait))
    print_summary(result, time.perf_counter() - started)
    if not result.complete:
        print_incomplete("simulate", result)
        return 1
    return 0


def print_incomplete(command: str, result) -> None:  # type: ignore[no-untyped-def]
    """What a run that did not complete is missing, then one closing line (stderr)."""
    for line in result.missing:
        print(f"  {line}", file=sys.stderr)
    print(f"alert-timing {command}: {result.stopped or 'not every alert came out within --wait'}", file=sys.stderr)


def _simulate_sit(args: argparse.Namespace, settings: settings_mod.Settings) -> int:
    """The SIT scenario: every sample alert, twice per device type, and a pass/fail table."""
    from alert_timing.simulator.run import run_traffic
    from alert_timing.simulator.sit import check, format_table, sit_start, sit_traffic
    from alert_timing.simulator.traffic import DEFAULT_START, TrafficConfig
    from shared.csp_notifications import NotificationConfigError
    from shared.csp_notifications import load as load_notifications
    from shared.dcc_rules import RuleTable, RuleTableError
    from shared.timefmt import format_iso

    start = sit_start(_run(_pipeline_event_time(settings)))
    if start != DEFAULT_START:
        print(f"the pipeline has run: the samples are dated from {format_iso(start)}, after its event time",
              file=sys.stderr)
    try:
        traffic, cases = sit_traffic(RuleTable.load(settings.dcc_rules),
                                     load_notifications(settings.csp_notifications), seed=args.seed,
                                     start_ms=start)
    except (RuleTableError, NotificationConfigError) as exc:
        print(f"alert-timing simulate: {exc}", file=sys.stderr)
        return 2
    result = _run(run_traffic(settings, TrafficConfig(alerts=0, seed=args.seed), rate=args.rate,
                              wait_s=args.wait, traffic=traffic))
    rows = check(cases, result.records)
    print(format_table(rows))
    if not result.complete:
        print("not every expected record came out within --wait", file=sys.stderr)
    return 0 if result.complete and all(r.passed for r in rows) else 1


async def _pipeline_event_time(settings: settings_mod.Settings) -> int | None:
    """At most the event time the pipeline is at now (None: it has seen nothing)."""
    from alert_timing.ops.common import connect
    from alert_timing.simulator.run import metrics_latest_inputs
    from alert_timing.simulator.sit import pipeline_event_time

    nc = await connect(settings, "simulate")
    try:
        latest = await metrics_latest_inputs(nc.jetstream(timeout=settings.publish_ack_timeout_s),
                                             settings.metrics_partitions)
    finally:
        await nc.close()
    return pipeline_event_time(latest, int(time.time() * 1000))


def cmd_up(args: argparse.Namespace) -> int:
    setup_logging("up", "WARNING")
    data_dir = Path(args.data_dir)
    if args.partitions is not None and args.partitions < 1:
        print("alert-timing up: --partitions must be at least 1", file=sys.stderr)
        return 2
    try:
        replicas = parse_replicas(args.replicas)
        _traffic_config(args)  # the traffic flags, checked before anything starts
        settings = settings_mod.load(nats_url=args.nats_url, data_dir=str(data_dir),
                                     metrics_partitions=args.partitions)
        if settings.metrics_partitions > 1:  # metrics scales by partition: one replica each by default
            replicas.setdefault(s.METRICS, settings.metrics_partitions)
        sup = Supervisor(settings, data_dir, args.nats_url, replicas)
    except ValueError as exc:
        print(f"alert-timing up: {exc}", file=sys.stderr)
        return 2
    if args.fresh:
        if args.nats_url:
            print("alert-timing up: --fresh clears the embedded nats-server's store; with --nats-url there is "
                  "none of ours to clear", file=sys.stderr)
            return 2
        try:
            print(clear_data_dir(data_dir))
        except ValueError as exc:
            print(f"alert-timing up: {exc}", file=sys.stderr)
            return 2
    elif args.simulate and any((data_dir / "ast").glob("date=*")):
        print(f"note: {data_dir} holds an earlier run; alerts of the same --seed were recorded then and will "
              f"not come out again (--fresh clears it first)", file=sys.stderr)
    code = 0
    try:
        url = sup.start_server()
        settings = settings_mod.load(nats_url=url, data_dir=str(data_dir), metrics_partitions=args.partitions)
        run_bootstrap(settings)
        sup.start_services()
        sup.supervise()  # a service that exits is started again (counted in `status`)
        print(f"nats-server  {url}" + ("" if args.nats_url else f" (store {data_dir / 'jetstream'})"))
        print(f"services     {', '.join(sup.processes)} (logs in {sup.log_dir})")
        if settings.metrics_partitions > 1:
            owners = ", ".join(f"metrics-{i}: " + ("all" if p is None else f"partition {p}")
                               for i, p in enumerate(sup.metrics_assignment))
            print(f"partitions   {settings.metrics_partitions} ({owners})")
        if args.simulate:
            started = time.perf_counter()
            result = _run(run_traffic(settings, _traffic_config(args), rate=args.rate, wait_s=args.wait,
                                      logs=sup.log_dir, alive=sup.check))
            print_summary(result, time.perf_counter() - started)
            dead = sup.check()
            if dead:
                print(f"services that died: {', '.join(dead)} (logs in {sup.log_dir})", file=sys.stderr)
                code = 1
            if not result.complete:
                print_incomplete("up", result)
                code = 1
            else:
                code = max(code, _demo_report(data_dir))
        if args.keep or not args.simulate:
            print(f"running; NATS_URL={url}  (Ctrl-C to stop)")
            wait_for_signal()
    finally:
        sup.stop()
    return code


def _demo_report(data_dir: Path) -> int:
    out = data_dir / "report"
    days = sorted(p.name[5:] for p in (data_dir / "ast").glob("date=*"))
    if not days:
        print("no AST files were written", file=sys.stderr)
        return 1
    end = (date.fromisoformat(days[-1]) + timedelta(days=1)).isoformat()
    code = report.main(["--data-dir", str(data_dir), "--from", f"{days[0]}T00:00:00Z",
                        "--to", f"{end}T00:00:00Z", "--out", str(out)])
    # the day's percentiles from the merged 15-minute sketches against DuckDB's exact figures
    if not print_comparison(compare(data_dir)):
        print("a sketch percentile is outside its stated bound of the exact value", file=sys.stderr)
        code = max(code, 1)
    if (out / "index.html").exists():
        print(f"\nQ&A dashboard: {(out / 'index.html').resolve()}")
    return code


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = settings_mod.load(nats_url=args.nats_url)
    path = Path(args.file)
    if not path.is_file():
        print(f"alert-timing ingest: no such file: {path}", file=sys.stderr)
        return 2

    async def go() -> int:
        nc = await connect(settings, "ingest")
        js = nc.jetstream()
        sent = 0
        batch: list[bus.Outgoing] = []
        try:
            # A local file read a line at a time between publishes: nothing else runs meanwhile.
            with path.open("rb") as fh:  # noqa: ASYNC230
                for n, line in enumerate(fh, start=1):
                    line = line.rstrip(b"\r\n")
                    if not line.strip():
                        continue
                    batch.append(bus.Outgoing(args.subject, line, f"ingest:{path.name}:{n}"))
                    if len(batch) >= 1000:
                        await bus.publish_all(js, batch, settings.publish_ack_timeout_s)
                        sent += len(batch)
                        batch.clear()
                        print(f"\rpublished {sent}", end="", file=sys.stderr)
                await bus.publish_all(js, batch, settings.publish_ack_timeout_s)
                sent += len(batch)
        finally:
            await nc.close()
        print(f"\rpublished {sent} lines from {path} to {args.subject}", file=sys.stderr)
        return 0

    return _run(go())


def cmd_bench(args: argparse.Namespace) -> int:
    """The benchmarks sit above the tools: they run as their own process, with the arguments
    given (``python -m alert_timing_benchmarks.pipeline``), never imported from here."""
    return subprocess.call([sys.executable, "-m", "alert_timing_benchmarks.pipeline", *args.passed_on])


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="alert-timing",
        description="Alert throughput timing for the GB smart-metering network (NATS JetStream services).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="run everything: embedded nats-server, bootstrap, the four services",
                       description="Start an embedded nats-server (unless --nats-url), own the streams, "
                                   "supervise the four services; with --simulate push a simulated day through.")
    _nats_arg(p)
    p.add_argument("--data-dir", default="var", help="JetStream store, logs and AST files (default %(default)s)")
    p.add_argument("--simulate", action="store_true", help="push simulated traffic, print a summary, stop")
    p.add_argument("--keep", action="store_true", help="keep running after --simulate (for tail/trace/status)")
    p.add_argument("--fresh", action="store_true",
                   help="start from an empty --data-dir: clear the store, metrics state, logs and AST files a "
                        "previous `up` left there (refused for a directory `up` did not make; `make demo` uses it)")
    p.add_argument("--replicas", action="append", metavar="SERVICE=N",
                   help="run N processes of SERVICE (repeatable, e.g. --replicas dsp-mapping=2); replicas share "
                        "the service's durable consumers; metrics: 1 (owning every partition) or one per partition")
    p.add_argument("--partitions", type=int, default=None, metavar="N",
                   help="metrics partitions (default $ALERT_TIMING_METRICS_PARTITIONS or 1); with N > 1 one metrics "
                        "replica per partition unless --replicas metrics=1")
    _simulate_args(p, 20_000)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("service", help="run one service (the container entrypoint)",
                       description="Run one service against $NATS_URL / --nats-url.")
    p.add_argument("name", choices=list(SERVICE_BUILDERS), help="which service")
    _nats_arg(p)
    p.set_defaults(func=cmd_service)

    p = sub.add_parser("bootstrap", help="create or update every stream and durable consumer",
                       description="The one step that owns stream and consumer configuration.")
    _nats_arg(p)
    p.set_defaults(func=cmd_bootstrap)

    p = sub.add_parser("simulate", help="publish realistic traffic and play the Service User side",
                       description="Publish seeded CSP traffic with real GBCS frames, answer deliveries "
                                   "as Service Users, wait for every record, print a summary.")
    _nats_arg(p)
    _simulate_args(p, 10_000)
    p.add_argument("--scenario", choices=("day", "sit"), default="day",
                   help="day: a realistic day of traffic (default); sit: every SIT sample alert (AD1, 8F3F, 810D, "
                        "8F0F, 8F72, and Device Alerts to the ACB raising N39, N53, N54, N62) twice per device type, "
                        "then a pass/fail table (exit 1 on any fail)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("ingest", help="publish CSP North RNI JSON objects, one per line, as they are",
                       description="Publish each line of FILE, unchanged, to ast.in.csp-north.")
    p.add_argument("file", help="a file of JSON objects, one per line")
    _nats_arg(p)
    p.add_argument("--subject", default=s.IN_CSP_NORTH, choices=list(s.IN_CSP), help="inbound subject")
    p.set_defaults(func=cmd_ingest)

    gbcs_cli.add_parser(sub)
    report.add_parser(sub)
    replay.add_parser(sub)
    p = sub.add_parser("bench", add_help=False,
                       help="measure throughput, latency, memory and replay on an embedded nats-server "
                            "(alert-timing bench --help for its options)")
    p.set_defaults(func=cmd_bench, passes_on=True)
    ops.add_parsers(sub)
    soak.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from alert_timing.ops.common import one_line

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.passed_on = extra
    if extra and not getattr(args, "passes_on", False):  # said by the command's name, not the program's
        print(f"alert-timing {args.command}: unrecognized arguments: {' '.join(extra)} "
              f"(see alert-timing {args.command} --help)", file=sys.stderr)
        return 2
    # Every command: a problem (NATS unreachable, a bad value, a missing file) is one line, exit 2.
    return one_line(args.command, args.func)(args)


if __name__ == "__main__":
    sys.exit(main())

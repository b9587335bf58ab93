"""`alert-timing replay`: rebuild records and 15-minute reports from the event log into a new output."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from shared import bus
from shared import subjects as s
from shared.eventlog import sequence_at
from shared.settings import Settings, load
from shared.timefmt import TimestampError, parse_iso


async def replay(settings: Settings, data_dir: Path, start_iso: str | None, end_iso: str | None, partitions: int,
                 publish_prefix: str | None = None, show: bool = True) -> dict:
    """Rebuild records and 15-minute reports from the event log into ``data_dir`` (and, if
    given, onto ``<publish_prefix>.record`` / ``<publish_prefix>.report.15m``), leaving the
    live consumers untouched."""

    # Here, not at the top: every `alert-timing` command builds its parser from this module,
    # and the metrics service's imports (faststream and the rest) cost seconds each time.
    from alert_timing.ops.common import connect
    from services.metrics.app import emit, metrics_config
    from services.metrics.core import MetricsCore
    from services.metrics.rebuild import read_events
    from services.runtime.service import Emitter

    nc = await connect(settings, "replay")  # fails fast (one line) when NATS cannot be reached
    js = nc.jetstream(timeout=settings.publish_ack_timeout_s)
    totals = {"events": 0, "records": 0, "reports": 0, "seconds": 0.0}
    try:
        first = 1
        if start_iso:
            found = await sequence_at(js, s.STREAM_EVENTS, start_iso, bus.reply_prefix(nc))
            if found is None:
                raise SystemExit(f"alert-timing replay: no events stored after {start_iso}")
            first = found
        last = None
        if end_iso:
            after = await sequence_at(js, s.STREAM_EVENTS, end_iso, bus.reply_prefix(nc))
            last = None if after is None else after - 1
        started = time.perf_counter()
        for p in range(partitions):
            spec = next(c for c in bus.consumer_specs(partitions) if c.durable == bus.metrics_durable(p))
            core = MetricsCore(metrics_config(settings))
            async for events in read_events(nc, spec.filter_subjects, first, last):
                output = core.apply(events)
                out = Emitter()
                emit(output, out, Path(data_dir), p, partitions=partitions,
                     report_subject=f"{publish_prefix}.report.15m" if publish_prefix else s.REPORT_15M,
                     record_subject=f"{publish_prefix}.record" if publish_prefix else s.RECORD)
                if publish_prefix:
                    for m in out.messages():
                        await nc.publish(m.subject, m.payload)
                totals["events"] += len(events)
                totals["records"] += len(output.records)
                totals["reports"] += len(output.closed)
                if show:
                    print(f"\rpartition {p}: {totals['events']} events, {totals['records']} records, "
                          f"{totals['reports']} reports", end="", file=sys.stderr, flush=True)
        totals["seconds"] = round(time.perf_counter() - started, 3)
        if show:
            print(file=sys.stderr)
    finally:
        await nc.close()
    return totals


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "replay", help="rebuild records and 15-minute reports from the event log into a new output",
        description="Read the metrics inputs back from the event log (by store time, resolved to a "
                    "sequence) through the same deterministic core, into a new data directory "
                    "(and optionally a new subject prefix). Live consumers are not touched.")
    p.add_argument("--nats-url", help="NATS server URL (default: $NATS_URL)")
    p.add_argument("--from", dest="start", help="ISO time the events were stored from (default: the start)")
    p.add_argument("--to", dest="end", help="ISO time the events were stored until (default: now)")
    p.add_argument("--data-dir", required=True, help="a NEW directory for the rebuilt AST files")
    p.add_argument("--publish-prefix", help="also publish records and reports under this subject prefix "
                                            "(e.g. replay.ast), core NATS, not stored")
    p.add_argument("--partitions", type=int, default=None, help="metrics partitions (default: settings)")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    settings = load(nats_url=args.nats_url)
    if args.partitions is not None and args.partitions < 1:
        print("alert-timing replay: --partitions must be at least 1", file=sys.stderr)
        return 2
    for value in (args.start, args.end):
        if value:
            try:
                parse_iso(value)
            except TimestampError as exc:
                print(f"alert-timing replay: {exc}", file=sys.stderr)
                return 2
    target = Path(args.data_dir)
    if (target / "ast").exists() and any((target / "ast").iterdir()):
        print(f"alert-timing replay: {target} already holds AST files; give a new directory", file=sys.stderr)
        return 2
    if args.publish_prefix and args.publish_prefix.split(".")[0] == "ast":
        print("alert-timing replay: --publish-prefix must not be under ast. (it would feed the live streams)",
              file=sys.stderr)
        return 2
    totals = asyncio.run(replay(settings, target, args.start, args.end,
                                args.partitions or settings.metrics_partitions, args.publish_prefix))
    rate = totals["events"] / totals["seconds"] if totals["seconds"] else 0
    print(f"replayed {totals['events']} events into {target}: {totals['records']} records, "
          f"{totals['reports']} reports in {totals['seconds']} s ({rate:.0f} events/s)")
    return 0

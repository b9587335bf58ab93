"""`alert-timing soak`: a long run under random faults, then a count of what came out.

An embedded nats-server, the bootstrap and the four services as processes (as `alert-timing
up`), and the seeded simulator sending traffic at ``--rate`` inputs per second for
``--duration`` seconds (1 % malformed inputs and 5 % duplicates by default, the delivery log
shuffled). While it runs, faults come at random (seeded) moments: a service killed
(SIGKILL) or stopped (SIGTERM) and started again, or nats-server stopped and started on the
same port and store. After the traffic, the run waits for every record and window report,
lets the consumers settle, then reads the event log back and checks:

- every expected delivery has a record (latest revision), and no other;
- no (delivery, revision) was published with two different contents;
- every malformed input was rejected, none dead-lettered;
- no duplicate counted (each window's alert count = its distinct deliveries);
- every window reported, revisions without gaps.

It prints alerts in, records out, rejected, duplicates suppressed, restarts survived, and
exits 1 on any loss (0 when everything is accounted for).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from alert_timing.simulator.run import run_traffic
from alert_timing.simulator.traffic import Traffic, TrafficConfig
from alert_timing.supervisor import Supervisor, run_bootstrap
from shared import bus
from shared import settings as settings_mod
from shared import subjects as s
from shared.eventlog import read_messages
from shared.settings import Settings
from shared.telemetry.logging import setup_logging
from shared.timefmt import format_iso

FAULTS = (("sigkill", 4), ("sigterm", 2), ("nats-restart", 1))


@dataclass
class SoakReport:
    alerts_in: int = 0
    inputs_published: int = 0
    deliveries_expected: int = 0
    records_out: int = 0
    record_messages: int = 0
    rejected: int = 0
    malformed_sent: int = 0
    malformed_missing: int = 0
    duplicates_sent: int = 0
    duplicates_counted: int = 0
    dead_letters: int = 0
    windows: int = 0
    window_revisions: int = 0
    restarts: int = 0
    faults: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def duplicates_suppressed(self) -> int:
        return self.duplicates_sent - self.duplicates_counted


def say(text: str) -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- faults


class Faults:
    """Random faults against the supervisor's processes and its nats-server."""

    def __init__(self, sup: Supervisor, rng: random.Random, settings: Settings, started: float) -> None:
        self.sup = sup
        self.rng = rng
        self.settings = settings
        self.started = started
        self.log: list[str] = []
        self.problems: list[str] = []
        self.restarts = 0

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.started:7.1f}s  {text}"
        self.log.append(line)
        say(f"fault    {line}")

    async def one(self) -> None:
        kind = self.rng.choices([k for k, _ in FAULTS], weights=[w for _, w in FAULTS])[0]
        if kind == "nats-restart":
            server = self.sup.server
            assert server is not None, "the soak runs its own nats-server"
            await asyncio.to_thread(server.stop)
            self.note("nats-server stopped")
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))
            await asyncio.to_thread(server.start)
            self.restarts += 1
            self.note("nats-server started again (same port, same store)")
            return
        key = self.rng.choice(sorted(self.sup.processes))
        sig = signal.SIGKILL if kind == "sigkill" else signal.SIGTERM
        bound = self.settings.drain_timeout_s + 10.0
        code = await asyncio.to_thread(self.sup.signal_service, key, sig, bound)
        self.note(f"{sig.name} {key}: exit status {code}")
        if sig == signal.SIGTERM and code != 0:
            self.problems.append(f"{key} did not stop cleanly on SIGTERM within {bound} s (status {code})")
            if code is None:
                await asyncio.to_thread(self.sup.signal_service, key, signal.SIGKILL, bound)
        await asyncio.sleep(self.rng.uniform(0.2, 2.0))
        await asyncio.to_thread(self.sup.restart_service, key)
        self.restarts += 1
        self.note(f"{key} started again")


# --------------------------------------------------------------------------- the run


async def _count(settings: Settings, stream: str, subject: str) -> int | None:
    try:
        nc = await bus.connect(settings, "soak-probe", allow_reconnect=False, max_reconnect_attempts=0,
                               connect_timeout=2)
    except Exception:  # noqa: BLE001 - the broker is restarting
        return None
    try:
        info = await nc.jetstream(timeout=5).stream_info(stream, subjects_filter=subject)
        return sum((info.state.subjects or {}).values())
    except Exception:  # noqa: BLE001 - the broker went away between the two calls
        return None
    finally:
        await nc.close()


async def _settle(settings: Settings, timeout: float = 300.0) -> bool:
    """Every durable consumer fully acknowledged and no output added for a few seconds."""
    nc = await bus.connect(settings, "soak-settle")
    js = nc.jetstream(timeout=10)
    deadline = time.monotonic() + timeout
    last, quiet = -1, time.monotonic()
    try:
        while time.monotonic() < deadline:
            try:
                busy = 0
                for spec in bus.consumer_specs(settings.metrics_partitions):
                    info = await js.consumer_info(spec.stream, spec.durable)
                    busy += (info.num_pending or 0) + (info.num_ack_pending or 0)
                out = (await js.stream_info(s.STREAM_OUT)).state.last_seq
            except Exception:  # noqa: BLE001 - ask again
                await asyncio.sleep(1.0)
                continue
            if out != last:
                last, quiet = out, time.monotonic()
            if busy == 0 and time.monotonic() - quiet >= 3.0:
                return True
            await asyncio.sleep(1.0)
        return False
    finally:
        await nc.close()


async def _verify(settings: Settings, traffic: Traffic, report: SoakReport) -> None:
    """Read the event log back and account for every input."""
    expected = traffic.expected_deliveries
    report.deliveries_expected = len(expected)
    contents: dict[tuple[str, int], set[bytes]] = defaultdict(set)
    latest: dict[str, int] = {}
    reports: Counter = Counter()
    latest_report: dict[str, dict] = {}
    rejected_raw: Counter = Counter()
    inputs: dict[int, bytes] = {}
    nc = await bus.connect(settings, "soak-verify")
    try:
        async for msgs in read_messages(nc, s.STREAM_IN, list(s.IN_CSP), 1):
            for m in msgs:
                inputs[m.metadata.sequence.stream] = m.data
        async for msgs in read_messages(nc, s.STREAM_OUT, [s.RECORD, s.REPORT_15M], 1):
            for m in msgs:
                body = msgspec.json.decode(m.data)
                if m.subject == s.RECORD:
                    report.record_messages += 1
                    key = (body["delivery_id"], body["revision"])
                    contents[key].add(m.data)
                    latest[key[0]] = max(key[1], latest.get(key[0], 0))
                else:
                    window, revision = body["window_start"], body["revision"]
                    reports[(window, revision)] += 1
                    if window not in latest_report or revision > latest_report[window]["revision"]:
                        latest_report[window] = body
        async for msgs in read_messages(nc, s.STREAM_EVENTS, [f"{s.REJECTED}.*", f"{s.DEAD_LETTER}.*"], 1):
            for m in msgs:
                body = msgspec.json.decode(m.data)
                if m.subject.startswith(s.DEAD_LETTER):
                    report.dead_letters += 1
                    continue
                report.rejected += 1
                raw = base64.b64decode(body["raw"])
                if body["stage"] != "hub-capture":  # names the input by its AST_IN sequence
                    raw = inputs.get(body.get("source_seq") or 0, raw)
                rejected_raw[raw] += 1
    finally:
        await nc.close()

    report.records_out = len(latest)
    missing, unexpected = expected - set(latest), set(latest) - expected
    if missing:
        report.problems.append(f"{len(missing)} deliveries without a record (e.g. {sorted(missing)[:3]})")
    if unexpected:
        report.problems.append(f"{len(unexpected)} records for deliveries never sent (e.g. {sorted(unexpected)[:3]})")
    conflicting = [k for k, v in contents.items() if len(v) > 1]
    if conflicting:
        report.problems.append(f"{len(conflicting)} (delivery, revision) published with different content")

    sent = Counter(i.data for i in traffic.inputs if i.kind == "malformed")
    report.malformed_sent = sum(sent.values())
    report.malformed_missing = sum(max(0, n - rejected_raw.get(data, 0)) for data, n in sent.items())
    if report.malformed_missing:
        report.problems.append(f"{report.malformed_missing} malformed inputs not rejected")
    if report.dead_letters:
        report.problems.append(f"{report.dead_letters} messages dead-lettered")

    twice = [k for k, n in reports.items() if n > 1]
    if twice:
        report.problems.append(f"{len(twice)} window revisions reported twice")
    revisions: dict[str, set[int]] = defaultdict(set)
    for window, revision in reports:
        revisions[window].add(revision)
    gaps = [w for w, r in revisions.items() if r != set(range(1, max(r) + 1))]
    if gaps:
        report.problems.append(f"{len(gaps)} windows with missing revisions")
    report.windows = len(latest_report)
    report.window_revisions = sum(reports.values())

    per_window: Counter = Counter()
    seen: set[str] = set()
    for i in traffic.inputs:
        if i.kind == "alert":
            for d in i.deliveries:
                if d not in seen:
                    seen.add(d)
                    per_window[i.dsp_received - i.dsp_received % 900_000] += 1
    want = {format_iso(w): n for w, n in per_window.items()}
    counted = {w: r["rows"][0]["alerts"] for w, r in latest_report.items()}
    not_reported = set(want) - set(counted)
    if not_reported:
        report.problems.append(f"{len(not_reported)} windows never reported")
    extra = sum(max(0, counted.get(w, 0) - n) for w, n in want.items()) + sum(
        n for w, n in counted.items() if w not in want)
    short = sum(max(0, n - counted.get(w, 0)) for w, n in want.items() if w in counted)
    report.duplicates_counted = extra
    if extra:
        report.problems.append(f"{extra} alerts counted more than once in the window reports")
    if short:
        report.problems.append(f"{short} alerts missing from the window reports")


async def soak(args: argparse.Namespace) -> SoakReport:

    data_dir = Path(args.data_dir)
    settings = settings_mod.load(data_dir=str(data_dir))
    sup = Supervisor(settings, data_dir, None)
    report = SoakReport()
    rng = random.Random(args.seed)
    started = time.monotonic()
    # SIGTERM or Ctrl-C: stop the traffic, then the services and the server, and say so.
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, interrupted.set)
    try:
        url = sup.start_server()
        settings = settings_mod.load(nats_url=url, data_dir=str(data_dir))
        await asyncio.to_thread(run_bootstrap, settings)
        sup.start_services()
        share = args.malformed_share + args.duplicate_share
        alerts = max(1, int(args.rate * args.duration / (1 + share)))
        config = TrafficConfig(alerts=alerts, seed=args.seed, malformed_share=args.malformed_share,
                               duplicate_share=args.duplicate_share, span_ms=int(args.span_hours * 3_600_000))
        say(f"soak     nats-server {url}, data in {data_dir}, {alerts} alerts at {args.rate:g} inputs/s "
            f"for ~{args.duration:g} s, a fault every ~{args.fault_every:g} s (seed {args.seed})")
        faults = Faults(sup, rng, settings, started)
        run = asyncio.create_task(run_traffic(settings, config, rate=args.rate, wait_s=args.wait, show=False))
        next_fault = started + rng.uniform(0.5, 1.5) * args.fault_every
        next_progress = started + args.progress_every
        while not run.done():
            await asyncio.wait({run}, timeout=0.5)
            now = time.monotonic()
            if run.done():
                break
            if interrupted.is_set():
                run.cancel()
                await asyncio.wait({run}, timeout=10.0)
                report.problems.append(f"interrupted after {now - started:.0f} s: nothing checked")
                say("soak     interrupted; stopping")
                return report
            if now >= next_progress:
                next_progress = now + args.progress_every
                inputs = await _count(settings, s.STREAM_IN, "ast.in.>")
                records = await _count(settings, s.STREAM_OUT, s.RECORD)
                say(f"progress {now - started:7.1f}s  inputs stored {inputs if inputs is not None else '?'}, "
                    f"record messages {records if records is not None else '?'}, restarts {faults.restarts}")
            if now >= next_fault and now - started < args.duration:
                await faults.one()
                next_fault = time.monotonic() + rng.uniform(0.5, 1.5) * args.fault_every
            dead = [k for k, p in sup.processes.items() if p.poll() is not None]
            for key in dead:  # a service that died by itself is a finding, but keep the run going
                code = sup.processes[key].returncode
                report.problems.append(f"{key} exited by itself with status {code}")
                say(f"problem  {key} exited by itself with status {code}; starting it again")
                sup.restart_service(key)
        result = run.result()
        report.alerts_in = result.traffic.count("alert")
        report.inputs_published = len(result.traffic.inputs)
        report.duplicates_sent = result.traffic.count("duplicate")
        report.restarts = faults.restarts
        report.faults = faults.log
        report.problems.extend(faults.problems)
        if not result.complete:
            report.problems.append("not every record and window report came out within the wait")
        say(f"soak     traffic done after {time.monotonic() - started:.1f} s; settling")
        if not await _settle(settings):
            report.problems.append("the consumers did not settle (messages left unacknowledged)")
        await _verify(settings, result.traffic, report)
    finally:
        codes: dict[str, int | None] = {}
        for proc in list(sup.processes.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for key, proc in list(sup.processes.items()):
            try:
                codes[key] = proc.wait(settings.drain_timeout_s + 10.0)
            except subprocess.TimeoutExpired:
                codes[key] = None
        sup.stop()
        bad = {k: c for k, c in codes.items() if c != 0}
        if bad:
            report.problems.append(f"services not stopping cleanly: {bad}")
        report.seconds = round(time.monotonic() - started, 1)
    return report


def print_report(report: SoakReport) -> None:
    say("")
    say(f"alerts in              {report.alerts_in} ({report.inputs_published} inputs published)")
    say(f"deliveries expected    {report.deliveries_expected}")
    say(f"records out            {report.records_out} ({report.record_messages} record messages, revisions included)")
    say(f"rejected               {report.rejected} ({report.malformed_sent} malformed sent, "
        f"{report.malformed_missing} missing)")
    say(f"duplicates suppressed  {report.duplicates_suppressed} of {report.duplicates_sent} sent "
        f"({report.duplicates_counted} counted)")
    say(f"dead letters           {report.dead_letters}")
    say(f"windows                {report.windows} ({report.window_revisions} report messages)")
    say(f"restarts survived      {report.restarts}")
    say(f"wall time              {report.seconds} s")
    if report.problems:
        say("LOSS OR DEFECT:")
        for p in report.problems:
            say(f"  - {p}")
    else:
        say("nothing lost, nothing counted twice")


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "soak", help="a long run under random faults (services killed, nats-server restarted), then a count",
        description="Run the pipeline on an embedded nats-server with seeded traffic for --duration seconds "
                    "while services are killed or stopped and nats-server is restarted at random, then "
                    "check that every alert came out once. Exits 1 on any loss.")
    p.add_argument("--duration", type=float, default=600.0, help="seconds of traffic (default %(default)s)")
    p.add_argument("--rate", type=float, default=100.0, help="inputs per second (default %(default)s)")
    p.add_argument("--fault-every", type=float, default=30.0,
                   help="mean seconds between faults (default %(default)s)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the traffic and of the faults (default %(default)s)")
    p.add_argument("--malformed-share", type=float, default=0.01,
                   help="share of malformed inputs (default %(default)s)")
    p.add_argument("--duplicate-share", type=float, default=0.05,
                   help="share of duplicated inputs (default %(default)s)")
    p.add_argument("--span-hours", type=float, default=24.0,
                   help="event-time span of the traffic (default %(default)s)")
    p.add_argument("--wait", type=float, default=300.0,
                   help="seconds to wait after the traffic for every record (default %(default)s)")
    p.add_argument("--progress-every", type=float, default=15.0,
                   help="seconds between progress lines (default %(default)s)")
    p.add_argument("--data-dir", default=None, help="a NEW directory for the store, logs and files "
                                                   "(default var/soak-<time>)")
    p.set_defaults(func=cmd_soak)


def cmd_soak(args: argparse.Namespace) -> int:
    setup_logging("soak", "WARNING")
    if args.duration <= 0 or args.rate <= 0 or args.fault_every <= 0:
        print("alert-timing soak: --duration, --rate and --fault-every must be positive", file=sys.stderr)
        return 2
    if args.data_dir is None:
        args.data_dir = f"var/soak-{time.strftime('%Y%m%dT%H%M%S')}"
    target = Path(args.data_dir)
    if target.exists() and any(target.iterdir()):
        print(f"alert-timing soak: {target} is not empty; give a new --data-dir", file=sys.stderr)
        return 2
    report = asyncio.run(soak(args))
    print_report(report)
    return 1 if report.problems else 0

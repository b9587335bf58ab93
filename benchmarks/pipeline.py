"""`alert-timing bench`: throughput, latency, memory and replay, measured in one run on an
embedded nats-server. Prints a table; ``--json`` prints one JSON object.

``alert-timing bench ARGS`` runs ``python -m alert_timing_benchmarks.pipeline ARGS``: the
benchmarks sit above the tools, which start them as a process and do not import them."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any

import msgspec
import nats
import psutil

from alert_timing.simulator.run import RunResult, run_traffic
from alert_timing.simulator.traffic import LogLine, Traffic, TrafficConfig, generate, prepare
from alert_timing.supervisor import Supervisor, run_bootstrap
from alert_timing_benchmarks import relays
from services.metrics.app import metrics_config
from services.metrics.core import MetricsCore
from services.metrics.rebuild import read_events
from shared import bus
from shared import subjects as s
from shared.csp_notifications import load as load_notifications
from shared.dcc_rules import RuleTable
from shared.eventlog import read_messages
from shared.settings import Settings, load
from shared.telemetry.logging import setup_logging

#: The kill phase: traffic at half load for this long since the last metrics snapshot
#: before SIGKILL, and on for ``KILL_TAIL_S`` after it (the relaunch happens under load).
KILL_AFTER_S = 60.0
KILL_TAIL_S = 30.0
#: The metrics snapshot interval of the kill phase's process: no snapshot by time inside it.
KILL_SNAPSHOT_INTERVAL_S = 3600.0
#: ``p99_full_ms`` is taken with inputs paced at this share of the measured pipeline rate.
FULL_SHARE = 0.9
HALF_SHARE = 0.5
#: The slowest pace a latency run is given, alerts/s.
MIN_RATE = 100.0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- pure pieces


def input_rate(alerts_per_s: float, inputs: int, alerts: int) -> float:
    """The inputs a second that carry ``alerts_per_s`` alerts, for traffic of ``inputs``
    messages holding ``alerts`` alerts (service responses and the like come along)."""
    return alerts_per_s * inputs / alerts if alerts else alerts_per_s


def paced(pipeline_alerts_per_s: float, share: float, seconds: float) -> tuple[float, int]:
    """(alerts/s, alerts) of a latency run at ``share`` of the measured pipeline rate that
    lasts ``seconds``; never slower than ``MIN_RATE``."""
    rate = max(MIN_RATE, pipeline_alerts_per_s * share)
    return rate, max(1, int(rate * seconds))


def mean_rate(rates: list[float]) -> int:
    """The yardstick of an interleaved run: the mean of its runs."""
    return round(sum(rates) / len(rates)) if rates else 0


def stored_per_alert(before: dict[str, int], after: dict[str, int], alerts: int) -> tuple[float, dict[str, float]]:
    """Messages added to each stream (last sequences, after minus before; a stream created in
    between counts from 0) per alert, and their sum."""
    added = {name: after[name] - before.get(name, 0) for name in sorted(after)}
    if not alerts:
        return 0.0, {}
    by_stream = {name: round(n / alerts, 3) for name, n in added.items() if n}
    return round(sum(added.values()) / alerts, 2), by_stream


def awaiting_timeout(answers: Mapping[tuple[str, str, str | None, str], list[LogLine]],
                     expected: Set[str], records: Set[str]) -> int:
    """Expected records not out because their delivery was never acknowledged (and not throttled):
    each comes as ``no_handshake`` once the handshake timeout (300 s) has passed in event time,
    after a paced phase ends. Out + awaiting = expected: every record accounted for."""
    missing = expected - records
    return sum(1 for key, lines in answers.items()
               if key[0] in missing and lines
               and all(msgspec.json.decode(line.data).get("outcome") == "failed" for line in lines))


def phase_records(result: RunResult, prefix: str) -> dict[str, int]:
    """A paced phase's record keys: out, expected, and out only after the handshake timeout."""
    expected = result.traffic.expected_deliveries
    prepared = result.traffic.prepared
    awaiting = awaiting_timeout(prepared.answers, expected, result.records.keys()) if prepared else 0
    return {f"{prefix}_records_out": len(result.records), f"{prefix}_records_expected": len(expected),
            f"{prefix}_records_awaiting_timeout": awaiting}


def traffic_since_snapshot(traffic_started: float, snapshots_at: list[float], now: float) -> float:
    """Seconds of traffic since the last snapshot: from the later of the traffic's start and
    the last snapshot seen written (monotonic times)."""
    return now - max([traffic_started, *snapshots_at])


# --------------------------------------------------------------------------- stream state


async def _stream_seqs(url: str) -> dict[str, int]:
    """Each of the product's streams' last sequence (the bench's own yardstick streams left out)."""
    nc = await nats.connect(url)
    try:
        infos = await nc.jetstream().streams_info()
    finally:
        await nc.close()
    bench = {relays.RELAY_STREAM, *relays.FLOOR_STREAMS}
    return {i.config.name: i.state.last_seq for i in infos if i.config.name and i.config.name not in bench}


async def _snapshot_seq(url: str) -> int:
    """The last sequence of the metrics snapshots' object store (0 while it has none)."""
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(f"OBJ_{s.METRICS_SNAPSHOTS}")).state.last_seq
    except Exception:  # noqa: BLE001 - no bucket yet
        return 0
    finally:
        await nc.close()


# --------------------------------------------------------------------------- RSS sampling


class RssSampler:
    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, proc in list(self.sup.processes.items()):
                try:
                    rss = psutil.Process(proc.pid).memory_info().rss / 2**20
                except psutil.Error:
                    continue
                name = key.rsplit("-", 1)[0]
                self.peak[name] = max(self.peak.get(name, 0.0), rss)
            self._stop.wait(0.2)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- CPU per alert


def cpu_seconds(sup: Supervisor) -> dict[str, float]:
    """CPU seconds (user + system) so far of each service (replicas summed), the broker and
    this process, which plays the simulated sources and Service Users."""
    pids = [(key.rsplit("-", 1)[0], proc.pid) for key, proc in sup.processes.items()]
    if sup.server is not None and sup.server.process is not None:
        pids.append(("nats-server", sup.server.process.pid))
    pids.append(("simulator", os.getpid()))
    used: dict[str, float] = {}
    for name, pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        used[name] = used.get(name, 0.0) + times.user + times.system
    return used


def cpu_us_per_alert(before: dict[str, float], after: dict[str, float], alerts: int) -> dict[str, float]:
    return {name: round((after[name] - before.get(name, 0.0)) / alerts * 1e6, 1)
            for name in sorted(after) if alerts}


# --------------------------------------------------------------------------- 3. latency


async def _latency(url: str, since_in: int, since_out: int) -> tuple[float, float]:
    """DSP-received (JetStream store time of the input) -> the record's store time."""
    nc = await nats.connect(url)
    received: dict[str, float] = {}
    async for msgs in read_messages(nc, s.STREAM_IN, list(s.IN_CSP), since_in):
        for m in msgs:
            body = msgspec.json.decode(m.data)
            rid = body.get("responseId") or body.get("messageId")
            received[rid] = m.metadata.timestamp.timestamp()
    lat: list[float] = []
    async for msgs in read_messages(nc, s.STREAM_OUT, [s.RECORD], since_out):
        for m in msgs:
            rec = msgspec.json.decode(m.data)
            if rec["revision"] == 1 and rec["response_id"] in received:
                lat.append((m.metadata.timestamp.timestamp() - received[rec["response_id"]]) * 1000)
    await nc.close()
    if len(lat) < 2:
        return float("nan"), float("nan")
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return q[49], q[98]


async def _last_seq(url: str, stream: str) -> int:
    nc = await nats.connect(url)
    info = await nc.jetstream().stream_info(stream)
    await nc.close()
    return info.state.last_seq


# --------------------------------------------------------------------------- restart


async def _pulling(url: str, within_s: float = 600.0) -> None:
    """Until every metrics durable is consumed again: a pull request waiting, or a push
    subscription bound."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=10)
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            infos = [await js.consumer_info(s.STREAM_EVENTS, bus.metrics_durable(p))
                     for p in range(load().metrics_partitions)]
            if all(info.num_waiting or info.push_bound for info in infos):
                return
            await asyncio.sleep(0.02)
        raise RuntimeError("metrics did not consume again")
    finally:
        await nc.close()


def restart_seconds(sup: Supervisor, url: str, sig: int, **extra_env: str) -> float:
    """Stop the metrics service with ``sig``, relaunch it (with ``extra_env`` on top of how it
    was launched), and time relaunch -> consuming again."""
    key = f"{s.METRICS}-0"
    code = sup.signal_service(key, sig, 60.0)
    if sig == signal.SIGTERM and code != 0:
        raise RuntimeError(f"metrics exited with {code} on SIGTERM")
    began = time.monotonic()
    if extra_env:
        name, index, extra = sup.launched[key]
        sup.start_service(name, index, **{**extra, **extra_env})
    else:
        sup.restart_service(key)
    asyncio.run(_pulling(url))
    return time.monotonic() - began


# --------------------------------------------------------------------------- 5. replay


async def _replay(url: str) -> float:
    nc = await nats.connect(url)
    core = MetricsCore(metrics_config(load()))
    subjects = next(spec for spec in bus.consumer_specs(1) if spec.service == s.METRICS).filter_subjects
    count = 0
    started = time.perf_counter()
    async for events in read_events(nc, subjects, 1):
        core.apply(events)
        count += len(events)
    elapsed = time.perf_counter() - started
    await nc.close()
    return count / elapsed if elapsed else 0.0


# --------------------------------------------------------------------------- run


async def _trace(url: str, response_id: str, alerts: int) -> dict:
    """``alert-timing trace`` of one alert after the run: through the index (what the command
    does) and by scanning the whole log (what it did before the index); the index's cost."""
    import nats

    from alert_timing.ops.trace import fill_in, find_journey, find_journey_indexed, scan_window_s

    nc = await nats.connect(url)
    try:
        started = time.perf_counter()
        journey = await find_journey_indexed(nc, response_id)
        assert journey is not None and journey.steps, f"{response_id} not in the trace index"
        await fill_in(nc, journey, scan_window_s(Settings()))  # the points read on from the index's
        trace_s = time.perf_counter() - started
        started = time.perf_counter()
        scanned = await find_journey(nc, response_id)
        scan_s = time.perf_counter() - started
        assert len(scanned.steps) == len(journey.steps), (len(scanned.steps), len(journey.steps))
        state = (await nc.jetstream().stream_info(s.STREAM_INDEX)).state
    finally:
        await nc.close()
    return {"trace_s": round(trace_s, 3), "trace_scan_s": round(scan_s, 2),
            "index_bytes_per_alert": round(state.bytes / alerts),
            "index_msgs_per_alert": round(state.messages / alerts, 2)}


def pending_rss_mb(n: int = 1_000_000) -> float:
    code = ("from alert_timing_benchmarks.metrics_core import pending_memory; import json; "
            f"print(json.dumps(pending_memory({n})['process_rss_mib']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if out.returncode:
        say(out.stderr[-2000:])
        return float("nan")
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def _traffic(settings: Settings, config: TrafficConfig) -> Traffic:
    """The simulator's traffic, built before a timed window (and outside its CPU accounting):
    the inputs, their messages and the Service Users' answers (``prepare``)."""
    traffic = generate(config, RuleTable.load(settings.dcc_rules), load_notifications(settings.csp_notifications))
    prepare(traffic, config.seed)
    return traffic


def _live(alerts: int, seed: int, seconds: float) -> TrafficConfig:
    """Traffic for a paced run that starts now and lasts ``seconds`` (no storm)."""
    return TrafficConfig(alerts=alerts, seed=seed, stream_time_is_dsp_received=True, storm_share=0.0,
                         start_ms=int(time.time() * 1000), span_ms=int(seconds * 1000))


def _paced_run(settings: Settings, url: str, pipeline_rate: float, share: float, seconds: float, seed: int,
               wait_s: float = 120.0) -> tuple[RunResult, float, float, float]:
    """A run paced at ``share`` of the measured pipeline rate: (result, alerts/s, p50, p99)."""
    rate, n = paced(pipeline_rate, share, seconds)
    config = _live(n, seed, seconds)
    traffic = _traffic(settings, config)
    since_in = asyncio.run(_last_seq(url, s.STREAM_IN)) + 1
    since_out = asyncio.run(_last_seq(url, s.STREAM_OUT)) + 1
    result = asyncio.run(run_traffic(settings, config,
                                     rate=input_rate(rate, len(traffic.inputs), traffic.count("alert")),
                                     wait_s=wait_s, show=True, close_windows=False, traffic=traffic))
    p50, p99 = asyncio.run(_latency(url, since_in, since_out))
    return result, rate, p50, p99


def _yardsticks(url: str, alerts: int, results: dict, floor_too: bool) -> None:
    limit = asyncio.run(relays.limit(url, alerts))
    results.setdefault("limit_runs_alerts_per_s", []).append(round(limit.alerts_per_s))
    results.setdefault("_relay_cpu", []).append(limit.cpu_us_per_alert)
    say(f"      bare relay {limit.alerts_per_s:.0f} alerts/s, {limit.cpu_us_per_alert} µs CPU per alert")
    if floor_too:
        say(f"      contract floor: input, delivery, log line and record, {alerts} alerts ...")
        floor = asyncio.run(relays.floor(url, alerts))
        results["floor_alerts_per_s"] = round(floor.alerts_per_s)
        results["floor_cpu_us_per_alert"] = floor.cpu_us_per_alert
        say(f"      contract floor {floor.alerts_per_s:.0f} alerts/s, {floor.cpu_us_per_alert} µs CPU per alert")


def _kill_phase(sup: Supervisor, settings: Settings, url: str, pipeline_rate: float, results: dict) -> None:
    """SIGKILL metrics under half load with ``KILL_AFTER_S`` of traffic since its last
    snapshot; time the relaunch to consuming again. The traffic goes on through the relaunch."""
    seconds = KILL_AFTER_S + KILL_TAIL_S
    rate, n = paced(pipeline_rate, HALF_SHARE, seconds)
    config = _live(n, 9, seconds)
    traffic = _traffic(settings, config)
    key = f"{s.METRICS}-0"
    outcome: dict[str, RunResult] = {}

    def play() -> None:
        outcome["result"] = asyncio.run(run_traffic(
            settings, config, rate=input_rate(rate, len(traffic.inputs), traffic.count("alert")),
            wait_s=seconds + 300, show=False, close_windows=False, traffic=traffic))

    snap_seq = asyncio.run(_snapshot_seq(url))
    snapshots_at: list[float] = []
    player = threading.Thread(target=play, daemon=True)
    started = time.monotonic()
    player.start()
    # A snapshot written meanwhile (metrics snapshots every ``snapshot_interval_s``) starts the
    # 60 s again; the kill comes at the latest 5 s before the traffic ends, so it is always
    # under load, and ``kill_traffic_since_snapshot_s`` says how long it really was.
    while (traffic_since_snapshot(started, snapshots_at, time.monotonic()) < KILL_AFTER_S
           and time.monotonic() - started < seconds - 5.0):
        if not player.is_alive():
            raise RuntimeError("the kill phase's traffic ended before metrics could be killed")
        time.sleep(1.0)
        seq = asyncio.run(_snapshot_seq(url))
        if seq != snap_seq:
            snap_seq = seq
            snapshots_at.append(time.monotonic())
    results["kill_traffic_since_snapshot_s"] = round(traffic_since_snapshot(started, snapshots_at, time.monotonic()), 1)
    sup.signal_service(key, signal.SIGKILL, 60.0)
    began = time.monotonic()
    sup.restart_service(key)
    asyncio.run(_pulling(url))
    results["restart_after_kill_s"] = round(time.monotonic() - began, 2)
    player.join()
    result = outcome.get("result")
    if result is None:
        results.update(kill_records_expected=len(traffic.expected_deliveries), kill_records_out=0)
    else:
        results.update(phase_records(result, "kill"))


def run(alerts: int, latency_seconds: float, skip_limit: bool = False) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="alert-timing-bench-") as tmp:
        data = Path(tmp)
        base = load(data_dir=str(data))
        sup = Supervisor(base, data, None)
        url = sup.start_server()
        try:
            settings = load(nats_url=url, data_dir=str(data))
            run_bootstrap(settings)
            sup.start_services()
            time.sleep(2.0)
            if not skip_limit:
                say(f"[1/7] limit: bare relay over {relays.RELAY_HOPS} JetStream hops, {alerts} alerts ...")
                _yardsticks(url, alerts, results, floor_too=False)
            say(f"[2/7] pipeline: four services, {alerts} alerts as fast as they are taken ...")
            with RssSampler(sup) as rss:
                config = TrafficConfig(alerts=alerts, seed=7)
                traffic = _traffic(settings, config)  # before the clock and the CPU window
                n_alerts = traffic.count("alert")
                seqs_before = asyncio.run(_stream_seqs(url))
                cpu_before = cpu_seconds(sup)
                result = asyncio.run(run_traffic(settings, config, wait_s=600,
                                                 show=True, traffic=traffic))
                cpu = cpu_us_per_alert(cpu_before, cpu_seconds(sup), n_alerts)
                stored, by_stream = stored_per_alert(seqs_before, asyncio.run(_stream_seqs(url)), n_alerts)
                results["stored_msgs_per_alert"] = stored
                results["stored_msgs_per_alert_by_stream"] = by_stream
                results["cpu_us_per_alert"] = cpu
                results["cpu_us_per_alert_services"] = round(sum(cpu.get(name, 0.0) for name in s.SERVICES), 1)
                elapsed = result.last_record - result.first_publish
                expected = len(result.traffic.expected_deliveries)
                results["pipeline_alerts_per_s"] = round(n_alerts / elapsed) if elapsed > 0 else 0
                results["records_expected"] = expected
                results["records_out"] = len(result.records)
                results["publish_seconds"] = round(result.publish_seconds, 2)
                say(f"      {results['pipeline_alerts_per_s']} alerts/s, {len(result.records)}/{expected} records, "
                    f"{stored} messages stored per alert")
                say(f"      CPU µs per alert: {cpu}")
                first = next(i.response_id for i in result.traffic.inputs if i.kind == "alert")
                say(f"      trace of the first alert ({first}) through the index, then by a scan ...")
                results.update(asyncio.run(_trace(url, first, n_alerts)))
                say(f"      trace {results['trace_s']} s (scan {results['trace_scan_s']} s), index "
                    f"{results['index_bytes_per_alert']} bytes and {results['index_msgs_per_alert']} "
                    "messages per alert")
                if not skip_limit:
                    say("[3/7] limit again (relay, pipeline, relay), then the contract floor ...")
                    _yardsticks(url, alerts, results, floor_too=True)

                pipeline_rate = results["pipeline_alerts_per_s"]
                say(f"[4/7] latency at {FULL_SHARE:.0%} of the pipeline rate for {latency_seconds:.0f} s ...")
                full, rate, _, p99_full = _paced_run(settings, url, pipeline_rate, FULL_SHARE, latency_seconds, 10)
                results["full_rate_alerts_per_s"] = round(rate)
                results["p99_full_ms"] = round(p99_full, 1)
                results.update(phase_records(full, "full"))
                say(f"      {rate:.0f} alerts/s: p99 {p99_full:.0f} ms, "
                    f"{len(full.records)}/{len(full.traffic.expected_deliveries)} records")

                say(f"[5/7] latency at half load for {latency_seconds:.0f} s ...")
                half, rate, p50, p99 = _paced_run(settings, url, pipeline_rate, HALF_SHARE, latency_seconds, 8)
                results["half_rate_alerts_per_s"] = round(rate)
                results["p50_ms"], results["p99_ms"] = round(p50, 1), round(p99, 1)
                results.update(phase_records(half, "half"))
                say(f"      {rate:.0f} alerts/s: p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
                    f"{len(half.records)}/{len(half.traffic.expected_deliveries)} records")
            say("[restart] metrics relaunched after SIGTERM (drain snapshot) ...")
            results["restart_s"] = round(restart_seconds(
                sup, url, signal.SIGTERM, ALERT_TIMING_SNAPSHOT_INTERVAL_S=str(KILL_SNAPSHOT_INTERVAL_S)), 2)
            say(f"      {results['restart_s']} s; then SIGKILL under half load after {KILL_AFTER_S:.0f} s of "
                "traffic since the last snapshot ...")
            _kill_phase(sup, settings, url, pipeline_rate, results)
            say(f"      relaunch to consuming {results['restart_after_kill_s']} s "
                f"({results['kill_traffic_since_snapshot_s']} s of traffic since the snapshot), "
                f"{results['kill_records_out']}/{results['kill_records_expected']} records")
            results["rss_mb"] = {k: round(v, 1) for k, v in sorted(rss.peak.items())}
            say("[6/7] memory: metrics core holding 1,000,000 alerts awaiting handshake ...")
            results["pending_1m_rss_mb"] = round(pending_rss_mb(), 1)
            say("[7/7] replay: rebuilding reports from the event log ...")
            results["replay_events_per_s"] = round(asyncio.run(_replay(url)))
        finally:
            sup.stop()
    relay_cpu = results.pop("_relay_cpu", [])
    if relay_cpu:
        results["relay_cpu_us_per_alert"] = round(sum(relay_cpu) / len(relay_cpu), 1)
    if results.get("limit_runs_alerts_per_s"):
        results["limit_alerts_per_s"] = mean_rate(results["limit_runs_alerts_per_s"])
    if results.get("limit_alerts_per_s"):
        results["ratio"] = round(results["pipeline_alerts_per_s"] / results["limit_alerts_per_s"], 2)
    if results.get("floor_alerts_per_s"):
        results["floor_ratio"] = round(results["pipeline_alerts_per_s"] / results["floor_alerts_per_s"], 2)
    return results


def print_table(r: dict) -> None:
    rows = [
        ("limit (bare relay, alerts/s)", r.get("limit_alerts_per_s"), "mean of the runs before and after"),
        ("bare relay CPU µs per alert", r.get("relay_cpu_us_per_alert"), ""),
        ("contract floor (alerts/s)", r.get("floor_alerts_per_s"), ""),
        ("pipeline (alerts/s)", r.get("pipeline_alerts_per_s"), ""),
        ("ratio (pipeline / limit)", r.get("ratio"), ">= 1.5"),
        ("floor ratio (pipeline / floor)", r.get("floor_ratio"), ">= 0.6"),
        ("records out / expected", f"{r.get('records_out')}/{r.get('records_expected')}", "all"),
        ("stored messages per alert", r.get("stored_msgs_per_alert"), "<= 6.0"),
        ("index messages per alert", r.get("index_msgs_per_alert"), "<= 2.2"),
        ("latency p50 at half load (ms)", r.get("p50_ms"), ""),
        ("latency p99 at half load (ms)", r.get("p99_ms"), "<= 1000"),
        ("  records out / expected", f"{r.get('half_records_out')}/{r.get('half_records_expected')}", "all"),
        ("    of them after the handshake timeout", r.get("half_records_awaiting_timeout"), "out + these = expected"),
        ("latency p99 at 90 % of the rate (ms)", r.get("p99_full_ms"), "<= 5000"),
        ("  records out / expected", f"{r.get('full_records_out')}/{r.get('full_records_expected')}", "all"),
        ("    of them after the handshake timeout", r.get("full_records_awaiting_timeout"), "out + these = expected"),
        ("CPU µs per alert, four services", r.get("cpu_us_per_alert_services"), "<= 0.4 x relay"),
        ("1M pending, metrics RSS (MB)", r.get("pending_1m_rss_mb"), "<= 1024"),
        ("replay (events/s)", r.get("replay_events_per_s"), ">= 100000"),
        ("metrics restart (s)", r.get("restart_s"), "<= 5"),
        ("metrics restart after SIGKILL (s)", r.get("restart_after_kill_s"), "<= 5"),
        ("  traffic since the snapshot (s)", r.get("kill_traffic_since_snapshot_s"), ">= 60"),
        ("  records out / expected", f"{r.get('kill_records_out')}/{r.get('kill_records_expected')}", "all"),
        ("    of them after the handshake timeout", r.get("kill_records_awaiting_timeout"), "out + these = expected"),
        ("trace of the first alert (s)", r.get("trace_s"), "<= 2"),
        ("same trace by a scan (s)", r.get("trace_scan_s"), ""),
        ("trace index (bytes per alert)", r.get("index_bytes_per_alert"), ""),
    ]
    for name, us in (r.get("cpu_us_per_alert") or {}).items():
        rows.append((f"CPU µs per alert {name}", us, ""))
    for name, mb in (r.get("rss_mb") or {}).items():
        rows.append((f"peak RSS {name} (MB)", mb, ""))
    print(f"{'measure':<34}{'value':>14}  target")
    for name, value, target in rows:
        print(f"{name:<34}{value!s:>14}  {target}")


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("bench", help="measure throughput, latency, memory and replay on an embedded nats-server",
                       description="Limit (bare relay, before and after the pipeline), contract floor, "
                                   "pipeline throughput, latency at 90 % and at half of that throughput, "
                                   "metrics restarts (SIGTERM; SIGKILL under load), peak RSS per service, "
                                   "1M-pending memory and replay speed, in one run.")
    p.add_argument("--alerts", type=int, default=200_000, help="alerts for the throughput runs (default %(default)s)")
    p.add_argument("--latency-seconds", type=float, default=20.0,
                   help="length of each latency run (default %(default)s)")
    p.add_argument("--skip-limit", action="store_true", help="skip the yardsticks (bare relay and contract floor)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    setup_logging("bench", "WARNING")
    if args.alerts < 1 or args.latency_seconds <= 0:
        print("alert-timing bench: --alerts must be at least 1 and --latency-seconds more than 0", file=sys.stderr)
        return 2
    results = run(args.alerts, args.latency_seconds, args.skip_limit)
    if args.json:
        print(json.dumps(results, sort_keys=True))
    else:
        print_table(results)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m alert_timing_benchmarks.pipeline [ARGS]``: the ``bench`` command, its
    problems in one line as every command's."""
    from alert_timing.cli import Parser
    from alert_timing.ops.common import one_line

    parser = Parser(prog="alert-timing")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args, extra = parser.parse_known_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    if extra:
        print(f"alert-timing bench: unrecognized arguments: {' '.join(extra)} (see alert-timing bench --help)",
              file=sys.stderr)
        return 2
    return one_line("bench", args.func)(args)


if __name__ == "__main__":
    sys.exit(main())

"""`alert-timing bench`: throughput, latency, memory and replay, measured in one run on an
embedded nats-server. Prints a table; ``--json`` prints one JSON object."""

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
from pathlib import Path

import msgspec
import nats
import psutil
from nats.js import api

from alert_timing.simulator.run import run_traffic
from alert_timing.simulator.traffic import TrafficConfig
from alert_timing.supervisor import Supervisor, run_bootstrap
from services.metrics.app import metrics_config
from services.metrics.core import MetricsCore
from services.metrics.rebuild import read_events
from shared import bus
from shared import subjects as s
from shared.eventlog import read_messages
from shared.settings import load
from shared.telemetry import setup_logging

RELAY_HOPS = 4  # in -> captured -> enriched -> expected -> record, as the pipeline hops


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- 1. limit


RELAY = r'''
import asyncio, sys, nats
from nats.js import api
async def main(url, hop, n):
    nc = await nats.connect(url); js = nc.jetstream()
    sub = await js.pull_subscribe(f"bench.h{hop}", durable=f"relay{hop}", stream="BENCH",
                                  config=api.ConsumerConfig(max_ack_pending=20000))
    done = 0
    while done < n:
        try:
            msgs = await sub.fetch(512, timeout=1)
        except Exception:
            continue
        futs = [await js.publish_async(f"bench.h{hop+1}", m.data) for m in msgs]
        await asyncio.gather(*futs)
        for m in msgs:
            await m.ack()
        done += len(msgs)
    await nc.close()
asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
'''


async def _limit(url: str, n: int) -> float:
    """A bare per-message relay over the same number of JetStream hops, plain nats-py."""
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=30)
    await js.add_stream(api.StreamConfig(name="BENCH", subjects=["bench.>"], storage=api.StorageType.FILE))
    for hop in range(RELAY_HOPS):
        await js.add_consumer("BENCH", api.ConsumerConfig(durable_name=f"relay{hop}", filter_subject=f"bench.h{hop}",
                                                          ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=20000))
    # Started, then only polled: nothing here waits on them until the run is over.
    relays = [subprocess.Popen([sys.executable, "-c", RELAY, url, str(hop), str(n)])  # noqa: ASYNC220
              for hop in range(RELAY_HOPS)]
    last = await js.pull_subscribe(f"bench.h{RELAY_HOPS}", stream="BENCH", config=api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE, filter_subject=f"bench.h{RELAY_HOPS}", mem_storage=True))
    payload = (b'{"responseId":"N0001000000001","commsHubId":123456789,"payload":"' + b"A" * 200
               + b'","timestamp":"20230601101502.450"}')
    started = time.perf_counter()

    async def produce() -> None:
        for i in range(0, n, 1000):
            futs = [await js.publish_async("bench.h0", payload) for _ in range(min(1000, n - i))]
            await asyncio.gather(*futs)

    producer = asyncio.create_task(produce())
    got = 0
    while got < n:
        try:
            got += len(await last.fetch(1000, timeout=2))
        except TimeoutError:
            if any(r.poll() is not None and r.returncode for r in relays):
                raise RuntimeError("a relay failed") from None
    elapsed = time.perf_counter() - started
    await producer
    for r in relays:
        r.wait(10)
    await js.delete_stream("BENCH")
    await nc.close()
    return n / elapsed


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
    """Until every metrics durable has a pull request waiting (the service is consuming again)."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=10)
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            infos = [await js.consumer_info(s.STREAM_EVENTS, bus.metrics_durable(p))
                     for p in range(load().metrics_partitions)]
            if all(info.num_waiting for info in infos):
                return
            await asyncio.sleep(0.02)
        raise RuntimeError("metrics did not pull again")
    finally:
        await nc.close()


def restart_seconds(sup: Supervisor, url: str, sig: int) -> float:
    """Stop the metrics service with ``sig``, relaunch it, and time relaunch -> pulling again."""
    key = f"{s.METRICS}-0"
    code = sup.signal_service(key, sig, 60.0)
    if sig == signal.SIGTERM and code != 0:
        raise RuntimeError(f"metrics exited with {code} on SIGTERM")
    began = time.monotonic()
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

    from alert_timing.ops.trace import find_journey, find_journey_indexed

    nc = await nats.connect(url)
    try:
        started = time.perf_counter()
        journey = await find_journey_indexed(nc, response_id)
        trace_s = time.perf_counter() - started
        assert journey is not None and journey.steps, f"{response_id} not in the trace index"
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


def run(alerts: int, latency_seconds: float, skip_limit: bool = False) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="alert-timing-bench-") as tmp:
        data = Path(tmp)
        base = load(data_dir=str(data))
        sup = Supervisor(base, data, None)
        url = sup.start_server()
        try:
            if not skip_limit:
                say(f"[1/5] limit: bare relay over {RELAY_HOPS} JetStream hops, {alerts} messages ...")
                results["limit_alerts_per_s"] = round(asyncio.run(_limit(url, alerts)))
                say(f"      {results['limit_alerts_per_s']} msg/s")
            settings = load(nats_url=url, data_dir=str(data))
            run_bootstrap(settings)
            sup.start_services()
            time.sleep(2.0)
            say(f"[2/5] pipeline: four services, {alerts} alerts as fast as they are taken ...")
            with RssSampler(sup) as rss:
                config = TrafficConfig(alerts=alerts, seed=7)
                full_in = asyncio.run(_last_seq(url, s.STREAM_IN)) + 1
                full_out = asyncio.run(_last_seq(url, s.STREAM_OUT)) + 1
                cpu_before = cpu_seconds(sup)
                result = asyncio.run(run_traffic(settings, config, wait_s=600, show=True))
                cpu = cpu_us_per_alert(cpu_before, cpu_seconds(sup), result.traffic.count("alert"))
                results["cpu_us_per_alert"] = cpu
                results["cpu_us_per_alert_services"] = round(sum(cpu.get(name, 0.0) for name in s.SERVICES), 1)
                elapsed = result.last_record - result.first_publish
                expected = len(result.traffic.expected_deliveries)
                results["pipeline_alerts_per_s"] = round(result.traffic.count("alert") / elapsed) if elapsed > 0 else 0
                results["records_expected"] = expected
                results["records_out"] = len(result.records)
                results["publish_seconds"] = round(result.publish_seconds, 2)
                say(f"      {results['pipeline_alerts_per_s']} alerts/s, {len(result.records)}/{expected} records")
                say(f"      CPU µs per alert: {cpu}")
                results["p99_full_ms"] = round(asyncio.run(_latency(url, full_in, full_out))[1], 1)
                first = next(i.response_id for i in result.traffic.inputs if i.kind == "alert")
                say(f"      trace of the first alert ({first}) through the index, then by a scan ...")
                results.update(asyncio.run(_trace(url, first, result.traffic.count("alert"))))
                say(f"      trace {results['trace_s']} s (scan {results['trace_scan_s']} s), index "
                    f"{results['index_bytes_per_alert']} bytes and {results['index_msgs_per_alert']} "
                    "messages per alert")

                rate = max(100.0, results["pipeline_alerts_per_s"] / 2)
                n_lat = int(rate * latency_seconds)
                say(f"[3/5] latency at half load: {rate:.0f} alerts/s for {latency_seconds:.0f} s ...")
                since_in = asyncio.run(_last_seq(url, s.STREAM_IN)) + 1
                since_out = asyncio.run(_last_seq(url, s.STREAM_OUT)) + 1
                asyncio.run(run_traffic(settings, TrafficConfig(
                    alerts=n_lat, seed=8, stream_time_is_dsp_received=True, storm_share=0.0,
                    start_ms=int(time.time() * 1000), span_ms=int(latency_seconds * 1000)),
                                        rate=rate, wait_s=120, show=True, close_windows=False))
                p50, p99 = asyncio.run(_latency(url, since_in, since_out))
                results["p50_ms"], results["p99_ms"] = round(p50, 1), round(p99, 1)
                say(f"      p50 {p50:.0f} ms, p99 {p99:.0f} ms")
            say("[restart] metrics relaunched after SIGTERM (drain snapshot) and after SIGKILL ...")
            results["restart_s"] = round(restart_seconds(sup, url, signal.SIGTERM), 2)
            results["restart_after_kill_s"] = round(restart_seconds(sup, url, signal.SIGKILL), 2)
            say(f"      {results['restart_s']} s, after SIGKILL {results['restart_after_kill_s']} s")
            results["rss_mb"] = {k: round(v, 1) for k, v in sorted(rss.peak.items())}
            say("[4/5] memory: metrics core holding 1,000,000 alerts awaiting handshake ...")
            results["pending_1m_rss_mb"] = round(pending_rss_mb(), 1)
            say("[5/5] replay: rebuilding reports from the event log ...")
            results["replay_events_per_s"] = round(asyncio.run(_replay(url)))
        finally:
            sup.stop()
    if "limit_alerts_per_s" in results and results.get("limit_alerts_per_s"):
        results["ratio"] = round(results["pipeline_alerts_per_s"] / results["limit_alerts_per_s"], 2)
    return results


def print_table(r: dict) -> None:
    rows = [
        ("limit (bare relay, alerts/s)", r.get("limit_alerts_per_s"), ""),
        ("pipeline (alerts/s)", r.get("pipeline_alerts_per_s"), ">= 10000"),
        ("ratio", r.get("ratio"), ">= 2.0"),
        ("records out / expected", f"{r.get('records_out')}/{r.get('records_expected')}", "all"),
        ("latency p50 at half load (ms)", r.get("p50_ms"), ""),
        ("latency p99 at half load (ms)", r.get("p99_ms"), "<= 1000"),
        ("latency p99 at full rate (ms)", r.get("p99_full_ms"), "<= 5000"),
        ("CPU µs per alert, four services", r.get("cpu_us_per_alert_services"), "<= 100"),
        ("1M pending, metrics RSS (MB)", r.get("pending_1m_rss_mb"), "<= 1024"),
        ("replay (events/s)", r.get("replay_events_per_s"), ">= 100000"),
        ("metrics restart (s)", r.get("restart_s"), "<= 5"),
        ("metrics restart after SIGKILL (s)", r.get("restart_after_kill_s"), "<= 5"),
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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="measure throughput, latency, memory and replay on an embedded nats-server",
                       description="Limit (bare relay), pipeline throughput, latency at half load, "
                                   "peak RSS per service, 1M-pending memory and replay speed, in one run.")
    p.add_argument("--alerts", type=int, default=200_000, help="alerts for the throughput runs (default %(default)s)")
    p.add_argument("--latency-seconds", type=float, default=20.0,
                   help="length of the half-load run (default %(default)s)")
    p.add_argument("--skip-limit", action="store_true", help="skip the bare-relay limit run")
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

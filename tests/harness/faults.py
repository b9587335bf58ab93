"""The fault suite's harness: a real nats-server (or a three-node cluster), the four services as
processes, the seeded simulator, and faults injected while it runs.

Every case runs the same seeded traffic (N alerts with fan-out, 1 % malformed inputs, 5 %
duplicates, the delivery log shuffled within a minute) and is held to the same outcome as
an undisturbed run of that seed (the ``baseline`` fixture in tests/fault/conftest.py, once per session):

- one latest ``ast.record`` per expected delivery, no other, and no (delivery, revision)
  published twice with different content;
- every malformed input on ``ast.rejected.*``, whole, with its reason; nothing dead-lettered;
- no duplicate counted: each window's alert count is its number of distinct deliveries;
- the latest revision of every window reports the same figures as the baseline, no window
  revision published twice, no revision missing;
- every durable consumer fully acknowledged, every service stopping with status 0.

No timing assertion anywhere: waits are bounded only so a broken run fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from alert_timing.nats_server import EmbeddedNats, free_port
from alert_timing.simulator.run import RunResult, run_traffic
from alert_timing.simulator.traffic import Traffic, TrafficConfig
from alert_timing.supervisor import Supervisor
from shared import bus
from shared import subjects as s
from shared.eventlog import read_messages
from shared.settings import Settings, load
from shared.timefmt import format_iso, parse_iso

REPO = Path(__file__).resolve().parents[2]

SEED = 20230601
ALERTS = 3_000
#: Inputs per second: about ten seconds of publishing, so faults land mid-run.
RATE = 300.0
SPAN_HOURS = 12.0
#: A service given SIGTERM must be gone within its drain bound (Settings.drain_timeout_s) plus this.
EXIT_MARGIN_S = 10.0
RUN_WAIT_S = 240.0
SETTLE_S = 150.0


def traffic_config(span_hours: float = SPAN_HOURS) -> TrafficConfig:
    return TrafficConfig(alerts=ALERTS, seed=SEED, malformed_share=0.01, duplicate_share=0.05,
                         span_ms=int(span_hours * 3_600_000))


# --------------------------------------------------------------------------- servers


def cluster_nodes(root: Path, n: int = 3) -> list[EmbeddedNats]:
    """``n`` nats-servers with JetStream, routed to each other on loopback ports."""
    ports = [free_port() for _ in range(n)]
    cluster_ports = [free_port() for _ in range(n)]
    routes = ",".join(f"nats://127.0.0.1:{p}" for p in cluster_ports)
    nodes = []
    for i in range(n):
        store = root / f"node{i}"
        nodes.append(EmbeddedNats(
            store, port=ports[i], log_file=root / f"node{i}.log",
            extra_args=["-n", f"node{i}", "--cluster_name", "alert-timing",
                        "--cluster", f"nats://127.0.0.1:{cluster_ports[i]}", "--routes", routes]))
    return nodes


def cli_env(url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "ALERT_TIMING_", "OTEL_"))}
    env.update(NATS_URL=url, ALERT_TIMING_DATA_DIR=str(data_dir), **extra)
    return env


def cli_bootstrap(env: dict[str, str], timeout: float = 60.0) -> None:
    """`alert-timing bootstrap`, retried while a new cluster elects its JetStream leader."""
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run([sys.executable, "-m", "alert_timing.cli", "bootstrap"], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"bootstrap failed: {done.stderr[-2000:]}")
        time.sleep(1.0)


# --------------------------------------------------------------------------- outcome


@dataclass
class Outcome:
    name: str
    result: RunResult
    records: list[tuple[str, int, bytes]]  # every ast.record message: delivery, revision, bytes
    reports: list[tuple[str, int, str, bytes]]  # every ast.report.15m: window, revision, msg id, bytes
    rejected: list[dict]
    dead_letters: list[dict]
    files: dict[str, bytes]  # window start -> its latest-revision JSON file
    exit_codes: dict[str, int | None]
    inputs: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # AST_IN seq -> subject, bytes
    errors: list[str] = field(default_factory=list)  # error lines the services logged
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def traffic(self) -> Traffic:
        return self.result.traffic

    def latest_reports(self) -> dict[str, dict]:
        latest: dict[str, dict] = {}
        for window, revision, _, data in self.reports:
            held = latest.get(window)
            if held is None or revision > held["revision"]:
                latest[window] = msgspec.json.decode(data)
        return latest

    def latest_records(self) -> dict[str, dict]:
        latest: dict[str, dict] = {}
        for did, revision, data in self.records:
            held = latest.get(did)
            if held is None or revision > held["revision"]:
                latest[did] = msgspec.json.decode(data)
        return latest


def figures(report: dict) -> list[dict]:
    """What a window report says (its rows: counts, leg statistics and sketches), without the
    revision number, which depends on how often the window was revised."""
    return report["rows"]


def expected_per_window(traffic: Traffic) -> Counter:
    """Distinct deliveries per 15-minute window (by DSP receipt), from what was sent."""
    per: Counter = Counter()
    seen: set[str] = set()
    for i in traffic.inputs:
        if i.kind != "alert":
            continue
        for d in i.deliveries:
            if d not in seen:
                seen.add(d)
                per[i.dsp_received - i.dsp_received % 900_000] += 1
    return per


def check(outcome: Outcome, baseline: Outcome | None) -> None:
    """The assertions every case shares (see the module docstring)."""
    name = outcome.name
    traffic = outcome.traffic
    expected = traffic.expected_deliveries
    assert outcome.result.complete, f"{name}: not every record or window report came out"

    # Records: one latest record per expected delivery; a (delivery, revision) has one content.
    contents: dict[tuple[str, int], set[bytes]] = defaultdict(set)
    for did, revision, data in outcome.records:
        contents[(did, revision)].add(data)
    conflicting = {k: v for k, v in contents.items() if len(v) > 1}
    assert not conflicting, f"{name}: (delivery, revision) published with different content: {list(conflicting)[:5]}"
    latest = outcome.latest_records()
    assert set(latest) == expected, (f"{name}: {len(set(latest) - expected)} unexpected, "
                                     f"{len(expected - set(latest))} missing deliveries")
    assert len(latest) == len(expected)

    # Malformed inputs: each one rejected with its reason. hub-capture keeps the input's
    # bytes whole in the rejection; a payload that only csp-enrichment finds unreadable
    # (bad_gbcs) is rejected there as the captured event, which names the input by its
    # AST_IN sequence (source_seq): its bytes are checked there.
    malformed = [i for i in traffic.inputs if i.kind == "malformed"]
    assert malformed
    by_raw: dict[bytes, list[dict]] = defaultdict(list)
    for r in outcome.rejected:
        raw = base64.b64decode(r["raw"])
        if r["stage"] == "hub-capture":
            by_raw[raw].append(r)
        else:
            original = outcome.inputs.get(r["source_seq"])
            assert original is not None, (name, r)
            by_raw[original[1]].append(r)
    sent: dict[bytes, list] = defaultdict(list)  # equal bytes may be sent more than once
    for m in malformed:
        sent[m.data].append(m)
    for data, inputs in sent.items():
        found = by_raw.get(data, [])
        ids = [m.response_id for m in inputs]
        assert len(found) == len(inputs), f"{name}: malformed {ids}: {len(found)} rejections for {len(inputs)} inputs"
        assert {r["reason"] for r in found} == {m.deliveries[0] for m in inputs}, (name, ids, found)
        for r in found:
            if r["stage"] == "hub-capture":
                assert r["subject"] == inputs[0].subject, (name, r)
            else:
                assert any(m.response_id.encode() in base64.b64decode(r["raw"]) for m in inputs), (name, r)
        # the headers as sent (the stored message also carries its Nats-Msg-Id)
        got = sorted(sorted((k, v) for k, v in r["headers"].items() if k != "Nats-Msg-Id")
                     for r in found if r["stage"] == "hub-capture")
        want = sorted(sorted(m.headers.items()) for m in inputs)
        assert not got or got == want, (name, ids, got, want)
    assert outcome.dead_letters == [], f"{name}: dead-lettered: {outcome.dead_letters[:3]}"

    # Window reports: no revision published twice, none missing; no duplicate counted.
    per_revision = Counter((window, revision) for window, revision, _, _ in outcome.reports)
    twice = [k for k, n in per_revision.items() if n > 1]
    assert not twice, f"{name}: window revisions reported twice: {twice[:5]}"
    revisions: dict[str, set[int]] = defaultdict(set)
    for window, revision, _, _ in outcome.reports:
        revisions[window].add(revision)
    gaps = {w: sorted(r) for w, r in revisions.items() if r != set(range(1, max(r) + 1))}
    assert not gaps, f"{name}: window revisions missing: {gaps}"
    reports = outcome.latest_reports()
    want = expected_per_window(traffic)
    first, last = min(want), max(want)
    every_window = {format_iso(w) for w in range(first, last + 1, 900_000)}
    assert every_window <= set(reports), f"{name}: windows never reported: {sorted(every_window - set(reports))[:5]}"
    for window, report in reports.items():
        total = report["rows"][0]
        assert (total["region"], total["category"]) == ("all", "all")
        assert total["alerts"] == want.get(parse_iso(window), 0), (name, window, total["alerts"])
        assert total["delivery_without_alert"] == 0, (name, window)

    # The files hold the latest revision of every window, as published.
    for window, report in reports.items():
        assert window in outcome.files, f"{name}: no file for {window}"
        assert msgspec.json.decode(outcome.files[window]) == report, \
            f"{name}: file of {window} is not its latest report"

    # Every service stopped cleanly (status 0) when asked, and logged no error (no failed batch,
    # no dead letter, no rebuild missing acked events).
    assert all(code == 0 for code in outcome.exit_codes.values()), f"{name}: exit codes {outcome.exit_codes}"
    assert outcome.errors == [], f"{name}: the services logged errors: {outcome.errors[:5]}"

    # The same figures as the undisturbed run of the same seed.
    if baseline is not None:
        base = baseline.latest_reports()
        assert set(reports) == set(base), f"{name}: windows differ from the baseline"
        differ = [w for w in sorted(base) if figures(reports[w]) != figures(base[w])]
        assert not differ, f"{name}: {len(differ)} windows differ from the baseline, first {differ[0]}"
        base_records = baseline.latest_records()
        changed = [d for d in base_records if {k: v for k, v in latest[d].items() if k != "revision"}
                   != {k: v for k, v in base_records[d].items() if k != "revision"}]
        assert not changed, f"{name}: {len(changed)} records differ from the baseline, e.g. {changed[:3]}"


# --------------------------------------------------------------------------- harness


class Harness:
    """One fault case: servers, bootstrap, services, the simulator, the faults."""

    def __init__(self, root: Path, name: str, nodes: int = 1) -> None:
        self.root = root
        self.name = name
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if nodes == 1:
            self.servers = [EmbeddedNats(root / "jetstream", log_file=root / "nats-server.log")]
        else:
            self.servers = cluster_nodes(root, nodes)
        self.replicas = 3 if nodes > 1 else 1
        self.faults: list[str] = []
        self.sup: Supervisor | None = None
        self.started = 0.0

    @property
    def url(self) -> str:
        return ",".join(server.url for server in self.servers)

    def settings(self) -> Settings:
        return load(nats_url=self.url, data_dir=str(self.data_dir), stream_replicas=self.replicas)

    def start(self) -> Harness:
        for server in self.servers:
            server.start()
        extra = {"ALERT_TIMING_STREAM_REPLICAS": str(self.replicas)}
        cli_bootstrap(cli_env(self.url, self.data_dir, **extra))
        self.sup = Supervisor(self.settings(), self.data_dir, self.url, extra_env=extra)
        self.sup.start_services()
        for key in self.sup.processes:
            self.wait_started(key)
        return self

    def starts(self, key: str) -> int:
        """How many times the service process ``key`` has logged that it started."""
        log = self.data_dir / "logs" / f"{key}.log"
        return log.read_text(errors="replace").count('"service started"') if log.exists() else 0

    def wait_started(self, key: str, times: int = 1, timeout: float = 60.0) -> None:
        """Wait until ``key`` is up (connected and consuming) for the ``times``-th time: a fault
        hits a running service, not one still importing its modules."""
        deadline = time.monotonic() + timeout
        while self.starts(key) < times:
            assert self.sup is not None
            if self.sup.processes[key].poll() is not None:
                raise AssertionError(f"{self.name}: {key} exited with {self.sup.processes[key].returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {key} did not start within {timeout} s")
            time.sleep(0.05)

    def note(self, text: str) -> None:
        self.faults.append(f"{time.monotonic() - self.started:6.1f}s {text}")

    # ---- faults (run inside the case's event loop)

    async def at(self, seconds: float) -> None:
        """Sleep until ``seconds`` after the run started."""
        await asyncio.sleep(max(0.0, self.started + seconds - time.monotonic()))

    async def kill_and_restart(self, key: str, sig: int = signal.SIGKILL, down_s: float = 0.5) -> int | None:
        assert self.sup is not None
        bound = self.settings().drain_timeout_s + EXIT_MARGIN_S
        code = await asyncio.to_thread(self.sup.signal_service, key, sig, bound)
        self.note(f"{signal.Signals(sig).name} {key} -> exit {code}")
        await asyncio.sleep(down_s)
        await self.restart(key)
        return code

    async def restart(self, key: str) -> None:
        """Start ``key`` again and wait until it is up."""
        assert self.sup is not None
        starts = self.starts(key)
        await asyncio.to_thread(self.sup.restart_service, key)
        await asyncio.to_thread(self.wait_started, key, starts + 1)
        self.note(f"restarted {key}")

    async def pause(self, key: str, seconds: float) -> None:
        """SIGSTOP the service process ``key`` for ``seconds``, then SIGCONT: the process lives on,
        holds what it was delivered and misses everything meanwhile (a frozen VM, a long GC)."""
        assert self.sup is not None
        proc = self.sup.processes[key]
        proc.send_signal(signal.SIGSTOP)
        self.note(f"SIGSTOP {key}")
        try:
            await asyncio.sleep(seconds)
        finally:
            proc.send_signal(signal.SIGCONT)
            self.note(f"SIGCONT {key} after {seconds:g} s")

    async def restart_server(self, index: int = 0, down_s: float = 1.0) -> None:
        server = self.servers[index]
        await asyncio.to_thread(server.stop)
        self.note(f"nats-server {index} stopped")
        await asyncio.sleep(down_s)
        await asyncio.to_thread(server.start)
        self.note(f"nats-server {index} started (same port, same store)")

    async def kill_node(self, index: int) -> None:
        await asyncio.to_thread(self.servers[index].stop, True)
        self.note(f"node {index} killed (SIGKILL)")

    async def count(self, stream: str, subject: str) -> int:
        """Messages of ``subject`` stored in ``stream`` (0 while the broker is away)."""
        try:
            nc = await bus.connect(self.settings(), "fault-probe", max_reconnect_attempts=0,
                                   allow_reconnect=False, connect_timeout=2)
        except Exception:  # noqa: BLE001 - the broker is away: nothing to count yet
            return 0
        try:
            info = await nc.jetstream(timeout=5).stream_info(stream, subjects_filter=subject)
            return (info.state.subjects or {}).get(subject, 0)
        except Exception:  # noqa: BLE001 - the broker went away between the two calls
            return 0
        finally:
            await nc.close()

    async def wait_for(self, stream: str, subject: str, n: int, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        got = 0
        while time.monotonic() < deadline:
            got = await self.count(stream, subject)
            if got >= n:
                return got
            await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name}: {subject} reached {got} < {n} messages")

    # ---- the run

    async def run(self, faults: Callable[[Harness], Awaitable[None]] | None = None, rate: float = RATE,
                  config: TrafficConfig | None = None) -> Outcome:
        settings = self.settings()
        self.started = time.monotonic()
        sim = asyncio.create_task(run_traffic(settings, config or traffic_config(), rate=rate, wait_s=RUN_WAIT_S,
                                              show=False))
        if faults is not None:
            try:
                await faults(self)
            except BaseException:
                sim.cancel()
                raise
        result = await sim
        await self.settle(settings)
        return await self.collect(settings, result)

    async def settle(self, settings: Settings) -> None:
        """Wait until every durable consumer has acknowledged everything and no output has been
        added for a while (redeliveries after a crash come back after ack_wait)."""
        nc = await bus.connect(settings, "fault-settle")
        js = nc.jetstream(timeout=10)
        deadline = time.monotonic() + SETTLE_S
        last_out, quiet_since = -1, time.monotonic()
        state: dict[str, tuple[int, int]] = {}
        try:
            while time.monotonic() < deadline:
                try:
                    for spec in bus.consumer_specs(settings.metrics_partitions):
                        info = await js.consumer_info(spec.stream, spec.durable)
                        state[spec.durable] = (info.num_pending or 0, info.num_ack_pending or 0)
                    out = (await js.stream_info(s.STREAM_OUT)).state.last_seq
                except Exception:  # noqa: BLE001 - a leader moving: ask again
                    await asyncio.sleep(0.5)
                    continue
                if out != last_out:
                    last_out, quiet_since = out, time.monotonic()
                idle = all(p == 0 and a == 0 for p, a in state.values())
                if idle and time.monotonic() - quiet_since >= 3.0:
                    return
                await asyncio.sleep(0.5)
            raise AssertionError(f"{self.name}: consumers never settled: {state}")
        finally:
            await nc.close()

    async def collect(self, settings: Settings, result: RunResult) -> Outcome:
        nc = await bus.connect(settings, "fault-collect")
        records: list[tuple[str, int, bytes]] = []
        reports: list[tuple[str, int, str, bytes]] = []
        rejected: list[dict] = []
        dead: list[dict] = []
        inputs: dict[int, tuple[str, bytes]] = {}
        try:
            async for msgs in read_messages(nc, s.STREAM_IN, list(s.IN_CSP), 1):
                for m in msgs:
                    inputs[m.metadata.sequence.stream] = (m.subject, m.data)
            async for msgs in read_messages(nc, s.STREAM_OUT, [s.RECORD, s.REPORT_15M], 1):
                for m in msgs:
                    body = msgspec.json.decode(m.data)
                    if m.subject == s.RECORD:
                        records.append((body["delivery_id"], body["revision"], m.data))
                    else:
                        msg_id = (m.headers or {}).get("Nats-Msg-Id", "")
                        reports.append((body["window_start"], body["revision"], msg_id, m.data))
            async for msgs in read_messages(nc, s.STREAM_EVENTS, [f"{s.REJECTED}.*", f"{s.DEAD_LETTER}.*"], 1):
                for m in msgs:
                    (dead if m.subject.startswith(s.DEAD_LETTER) else rejected).append(msgspec.json.decode(m.data))
        finally:
            await nc.close()
        return Outcome(self.name, result, records, reports, rejected, dead, latest_files(self.data_dir),
                       exit_codes={}, inputs=inputs, faults=list(self.faults),
                       seconds=round(time.monotonic() - self.started, 1))

    def stop_services(self) -> dict[str, int | None]:
        """SIGTERM every service; each must be gone within its drain bound; their statuses."""
        assert self.sup is not None
        bound = self.settings().drain_timeout_s + EXIT_MARGIN_S
        for proc in self.sup.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for key, proc in self.sup.processes.items():
            try:
                codes[key] = proc.wait(bound)
            except subprocess.TimeoutExpired:
                codes[key] = None
        self.sup.stop()
        return codes

    def close(self) -> None:
        if self.sup is not None:
            with contextlib.suppress(Exception):
                self.sup.stop()
        for server in self.servers:
            server.stop()


def latest_files(data_dir: Path) -> dict[str, bytes]:
    """window start (ISO) -> the JSON report file of its latest revision."""
    best: dict[str, tuple[int, Path]] = {}
    for path in (data_dir / "ast").rglob("ast_*_r*.json"):
        revision = int(path.stem.rsplit("_r", 1)[1])
        report = msgspec.json.decode(path.read_bytes())
        window = report["window_start"]
        if window not in best or revision > best[window][0]:
            best[window] = (revision, path)
    return {w: p.read_bytes() for w, (_, p) in best.items()}


def run_case(root: Path, name: str, faults: Callable[[Harness], Awaitable[None]] | None = None,
             nodes: int = 1, keep_server: bool = False, rate: float = RATE,
             config: TrafficConfig | None = None) -> tuple[Outcome, Harness]:
    """Start everything, run the traffic (``config``: default ``traffic_config()``) with the
    faults, stop the services, collect."""
    harness = Harness(root, name, nodes)
    try:
        harness.start()
        outcome = asyncio.run(harness.run(faults, rate, config))
        outcome.exit_codes = harness.stop_services()
        outcome.errors = [line[:500] for log in sorted((harness.data_dir / "logs").glob("*.log"))
                          if log.name != "nats-server.log"
                          for line in log.read_text(errors="replace").splitlines() if '"level": "error"' in line]
        print(f"\n{name}: {outcome.seconds} s, {len(outcome.records)} record messages, "
              f"{len(outcome.reports)} report messages; faults: {outcome.faults}")
    except BaseException:
        harness.close()
        raise
    if not keep_server:
        harness.close()
    return outcome, harness


class Baseline:
    """The undisturbed run of the seed, once per test run. With several workers (pytest-xdist)
    the first worker that needs it runs it, under a lock, and the others read its outcome; a
    case asks for it only when it checks its own outcome, so it runs its traffic meanwhile.
    The run's server is stopped with it; its store and data directory stay (``store``,
    ``data_dir``) for the replay."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._outcome: Outcome | None = None

    @property
    def run_dir(self) -> Path:
        return self.root / "baseline"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def store(self) -> Path:
        return self.run_dir / "jetstream"

    def outcome(self) -> Outcome:
        if self._outcome is None:
            done = self.root / "baseline.pickle"
            with open(self.root / "baseline.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not done.exists():
                    outcome, _ = run_case(self.run_dir, "baseline")
                    done.with_suffix(".tmp").write_bytes(pickle.dumps(outcome))
                    done.with_suffix(".tmp").rename(done)
                self._outcome = pickle.loads(done.read_bytes())
        return self._outcome


def seeded(case: str) -> random.Random:
    return random.Random(f"{SEED}:{case}")

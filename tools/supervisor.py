"""`alert-timing up`: an embedded nats-server (unless one is given), the stream bootstrap,
the four services as separate processes, and optionally a simulated run end to end.

Scale-out: ``replicas={service: n}`` starts n processes of a service. Replicas of the
stateless services share their durable pull consumers; metrics scales by partition, so its
replicas are either one process owning every partition or one process per partition
(``ALERT_TIMING_METRICS_PARTITION``), never two owning the same one."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import structlog

from alert_timing.nats_server import EmbeddedNats
from shared import bus
from shared import subjects as s
from shared.settings import Settings

log = structlog.get_logger()

#: Where ``up`` records the services it restarted (``alert-timing status`` reads it).
RESTARTS_FILE = "supervisor.json"
#: Backoff between restarts of one service: doubles from the first to the last, and starts
#: again from the first once the service has run for ``BACKOFF_RESET_S``.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
BACKOFF_RESET_S = 60.0


def restarts_path(data_dir: Path) -> Path:
    return data_dir / RESTARTS_FILE


def read_restarts(data_dir: Path) -> dict[str, dict[str, object]]:
    """The supervisor's restart counts per service process (empty when none, or no ``up``)."""
    try:
        data = json.loads(restarts_path(data_dir).read_text())
    except (OSError, ValueError):
        return {}
    services = data.get("services") if isinstance(data, dict) else None
    return services if isinstance(services, dict) else {}


class Supervisor:
    def __init__(self, settings: Settings, data_dir: Path, nats_url: str | None,
                 replicas: dict[str, int] | None = None, log_dir: Path | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.server: EmbeddedNats | None = None
        self.nats_url = nats_url
        self.replicas = dict(replicas or {})
        unknown = sorted(set(self.replicas) - set(s.SERVICES))
        if unknown:
            raise ValueError(f"no such service: {', '.join(unknown)} (services: {', '.join(s.SERVICES)})")
        if any(n < 1 for n in self.replicas.values()):
            raise ValueError(f"replicas must be at least 1: {self.replicas}")
        self.metrics_assignment = metrics_assignment(settings.metrics_partitions, self.replicas.get(s.METRICS, 1))
        self.log_dir = log_dir or data_dir / "logs"
        self.extra_env = dict(extra_env or {})
        self.processes: dict[str, subprocess.Popen] = {}
        self._stopping: threading.Event | None = None
        self._thread: threading.Thread | None = None
        #: key -> (service, index, extra environment): what `restart` starts again
        self.launched: dict[str, tuple[str, int, dict[str, str]]] = {}

    def start_server(self) -> str:
        if self.nats_url:
            return self.nats_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / MARKER).write_text(MARKER_TEXT)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.server = EmbeddedNats(self.data_dir / "jetstream", log_file=self.log_dir / "nats-server.log").start()
        self.nats_url = self.server.url
        return self.nats_url

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "NATS_URL": self.nats_url or "",
            "ALERT_TIMING_DATA_DIR": str(self.data_dir),
            "ALERT_TIMING_ALLOWED_LATENESS_S": str(self.settings.allowed_lateness_s),
            "ALERT_TIMING_HANDSHAKE_TIMEOUT_S": str(self.settings.handshake_timeout_s),
            "ALERT_TIMING_METRICS_PARTITIONS": str(self.settings.metrics_partitions),
            "ALERT_TIMING_METRICS_PARTITION": "",  # every partition, unless a replica is given one
        })
        env.update(self.extra_env)
        env.update(extra)
        return env

    def start_service(self, name: str, index: int = 0, **extra: str) -> subprocess.Popen:
        key = f"{name}-{index}"
        base = self.env().get("ALERT_TIMING_PROMETHEUS_PORT", "")
        if base.isdigit() and "ALERT_TIMING_PROMETHEUS_PORT" not in extra:
            # one scrape port per process: the given one for the first, the next ones after it
            ordinal = list(self.launched).index(key) if key in self.launched else len(self.launched)
            extra["ALERT_TIMING_PROMETHEUS_PORT"] = str(int(base) + ordinal)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{key}.log", "ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen([sys.executable, "-m", "alert_timing.cli", "service", name],
                                    env=self.env(**extra), stdout=log, stderr=log)
        self.processes[key] = proc
        self.launched[key] = (name, index, dict(extra))
        return proc

    def signal_service(self, key: str, sig: int = signal.SIGKILL, timeout: float = 30.0) -> int | None:
        """Send ``sig`` to one service process (``name-index``) and wait up to ``timeout`` for it
        to end; its return code (None if it is still running)."""
        proc = self.processes[key]
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def restart_service(self, key: str) -> subprocess.Popen:
        """Start a service process again as it was first started (after it died or was killed)."""
        proc = self.processes.get(key)
        if proc is not None and proc.poll() is None:
            raise RuntimeError(f"{key} is still running")
        name, index, extra = self.launched[key]
        return self.start_service(name, index, **extra)

    def start_services(self) -> None:
        for name in s.SERVICES:
            if name == s.METRICS:
                for i, partition in enumerate(self.metrics_assignment):
                    if partition is None:
                        self.start_service(name, i)
                    else:
                        self.start_service(name, partition, ALERT_TIMING_METRICS_PARTITION=str(partition))
                continue
            for i in range(self.replicas.get(name, 1)):
                self.start_service(name, i)

    def supervise(self, poll_s: float = 0.2) -> None:
        """Start every service process again when it exits (not on ``stop``), with backoff; each
        restart is logged and counted in ``<data-dir>/supervisor.json`` for ``status``."""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(poll_s, self._stopping), name="supervisor",
                                        daemon=True)
        self._thread.start()

    def _watch(self, poll_s: float, stopping: threading.Event) -> None:
        backoff: dict[str, float] = {}
        due: dict[str, float] = {}
        started: dict[str, float] = {k: time.monotonic() for k in self.processes}
        counts: dict[str, dict[str, object]] = {}
        while not stopping.wait(poll_s):
            now = time.monotonic()
            for key, proc in list(self.processes.items()):
                code = proc.poll()
                if code is None:
                    if now - started.get(key, now) >= BACKOFF_RESET_S:
                        backoff.pop(key, None)
                    continue
                if key not in due:  # just exited: schedule its restart
                    wait = backoff.get(key, 0.0)
                    backoff[key] = min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, wait * 2))
                    due[key] = now + wait
                    log.warning("service exited; starting it again", service=key, returncode=code, in_s=wait)
                    continue
                if now < due[key] or stopping.is_set():
                    continue
                del due[key]
                self.restart_service(key)
                started[key] = time.monotonic()
                entry = counts.setdefault(key, {"restarts": 0})
                entry["restarts"] = int(entry["restarts"]) + 1  # type: ignore[call-overload]
                entry["last_exit_code"] = code
                entry["last_restart"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                self._write_restarts(counts)
                log.warning("service started again", service=key, restarts=entry["restarts"])

    def _write_restarts(self, counts: dict[str, dict[str, object]]) -> None:
        path = restarts_path(self.data_dir)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"services": counts}, sort_keys=True))
        tmp.replace(path)

    def check(self) -> list[str]:
        """Names of services that died."""
        return [k for k, p in self.processes.items() if p.poll() is not None]

    def stop(self, timeout: float = 30.0) -> None:
        if self._stopping is not None and self._thread is not None:  # no restarts while stopping
            self._stopping.set()
            self._thread.join(5)
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        if self.server:
            self.server.stop()
            self.server = None


#: Left in a data directory by `up` with its own nats-server: what `up --fresh` may clear.
MARKER = ".alert-timing-up"
MARKER_TEXT = "made by `alert-timing up`; `alert-timing up --fresh` clears this directory\n"
#: What `up` writes in its data directory (a directory holding just these, from before the marker).
UP_ENTRIES = frozenset({MARKER, "jetstream", "logs", "ast", "report"})


def clear_data_dir(data_dir: Path) -> str:
    """Empty a data directory `up` made (its marker, or nothing but what `up` writes), for a
    run from a clean store; one line saying what was done. Raises ValueError for any other
    directory: a directory given by hand is never wiped on a guess."""
    if not data_dir.exists():
        return f"fresh run: {data_dir} is new"
    if not data_dir.is_dir():
        raise ValueError(f"--fresh: {data_dir} is not a directory")
    entries = sorted(p.name for p in data_dir.iterdir())
    if not entries:
        return f"fresh run: {data_dir} is empty"
    if MARKER not in entries and not set(entries) <= UP_ENTRIES:
        others = [e for e in entries if e not in UP_ENTRIES]
        raise ValueError(f"--fresh will not clear {data_dir}: `alert-timing up` did not make it (it holds "
                         f"{', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); remove it yourself "
                         f"or give another --data-dir")
    for entry in data_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return f"fresh run: cleared {data_dir} (the last run's JetStream store, metrics state, logs and AST files)"


def metrics_assignment(partitions: int, replicas: int) -> list[int | None]:
    """The partition each metrics replica owns (None: every partition): one replica owns all,
    or there is one replica per partition."""
    if partitions < 1:
        raise ValueError(f"metrics partitions must be at least 1, not {partitions}")
    if replicas == 1:
        return [None]
    if replicas == partitions:
        return list(range(partitions))
    raise ValueError(f"metrics replicas must be 1 (owning every partition) or one per partition "
                     f"({partitions}), not {replicas}")


def parse_replicas(items: list[str] | None) -> dict[str, int]:
    """``["dsp-mapping=2", "metrics=2"]`` -> ``{"dsp-mapping": 2, "metrics": 2}``."""
    out: dict[str, int] = {}
    for item in items or []:
        name, sep, count = item.partition("=")
        name = name.strip()
        if not sep or name not in s.SERVICES or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"--replicas {item!r}: give SERVICE=N with N >= 1, SERVICE one of {', '.join(s.SERVICES)}")
        out[name] = int(count)
    return out


async def bootstrap(settings: Settings) -> list[str]:
    from alert_timing.ops.common import connect

    nc = await connect(settings, "bootstrap")  # fails fast (one line) when NATS cannot be reached
    try:
        # The settings' timeout, not nats-py's 5 s: creating replicated streams on a loaded
        # cluster takes longer than that.
        return await bus.bootstrap(nc.jetstream(timeout=settings.publish_ack_timeout_s), settings)
    finally:
        await nc.close()


def wait_for_signal() -> None:
    stop = {"now": False}

    def handler(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop["now"]:
        time.sleep(0.5)


def run_bootstrap(settings: Settings) -> list[str]:
    return asyncio.run(bootstrap(settings))

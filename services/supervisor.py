"""`alert-timing up`: an embedded nats-server (unless one is given), the stream bootstrap,
the four services as separate processes, and optionally a simulated run end to end."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared import bus
from shared import subjects as s
from shared.settings import Settings


class Supervisor:
    def __init__(self, settings: Settings, data_dir: Path, nats_url: str | None,
                 replicas: dict[str, int] | None = None, log_dir: Path | None = None) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.server: bus.EmbeddedNats | None = None
        self.nats_url = nats_url
        self.replicas = replicas or {}
        self.log_dir = log_dir or data_dir / "logs"
        self.processes: dict[str, subprocess.Popen] = {}

    def start_server(self) -> str:
        if self.nats_url:
            return self.nats_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.server = bus.EmbeddedNats(self.data_dir / "jetstream", log_file=self.log_dir / "nats-server.log").start()
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
        })
        env.update(extra)
        return env

    def start_service(self, name: str, index: int = 0, **extra: str) -> subprocess.Popen:
        key = f"{name}-{index}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{key}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "service", name],
                                env=self.env(**extra), stdout=log, stderr=log)
        self.processes[key] = proc
        return proc

    def start_services(self) -> None:
        for name in s.SERVICES:
            for i in range(self.replicas.get(name, 1)):
                self.start_service(name, i)

    def check(self) -> list[str]:
        """Names of services that died."""
        return [k for k, p in self.processes.items() if p.poll() is not None]

    def stop(self, timeout: float = 30.0) -> None:
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


async def bootstrap(settings: Settings) -> list[str]:
    nc = await bus.connect(settings, "bootstrap")
    try:
        return await bus.bootstrap(nc.jetstream(), settings)
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

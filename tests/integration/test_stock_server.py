"""A stock `nats-server -js` (no configuration file: JetStream's store limit is a share of the
free disk, far below the 3 TiB the default stream limits ask): `alert-timing up --nats-url`
sizes the streams within what the server reserves, says how much history that holds, and runs
a simulated day; a server too small for even the smallest limits gets one line naming the
setting; streams made earlier on a server with more storage keep working."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
import pytest

from alert_timing.nats_server import EmbeddedNats, free_port, greets, nats_server_binary
from shared import bus
from shared import subjects as s
from shared.settings import Settings

pytestmark = [pytest.mark.integration]

CLI = [sys.executable, "-m", "alert_timing.cli"]


@contextmanager
def stock_server(store: Path, port: int = 0, *extra: str) -> Iterator[str]:
    """`nats-server -js` with nothing but a loopback port and a store directory."""
    port = port or free_port()
    store.mkdir(parents=True, exist_ok=True)
    with open(store.parent / f"{store.name}.log", "ab") as log:
        process = subprocess.Popen([nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port),
                                    "-sd", str(store), *extra], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, f"nats-server exited with {process.returncode}"
            if greets("127.0.0.1", port, b"INFO "):
                break
            assert time.monotonic() < deadline, "nats-server did not listen"
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(15)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # a short wall-clock window close, so a stalled run is recognised sooner
    env = {**os.environ, "ALERT_TIMING_IDLE_CLOSE_AFTER_S": "5"}
    for name in ("NATS_URL", "ALERT_TIMING_STREAM_MAX_BYTES"):
        env.pop(name, None)
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=900, env=env, cwd=cwd)


async def stream_limits(url: str) -> dict[str, int]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=10)
        return {name: (await js.stream_info(name)).config.max_bytes or -1
                for name in [*s.STREAM_SUBJECTS, s.STREAM_ADVISORIES]}
    finally:
        await nc.close()


def test_up_runs_a_simulated_day_on_a_stock_server(tmp_path: Path) -> None:
    with stock_server(tmp_path / "jetstream") as url:
        run = cli("up", "--simulate", "--alerts", "150", "--span-hours", "1", "--wait", "600",
                  "--nats-url", url, "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        assert "Q&A dashboard:" in run.stdout
        assert "insufficient storage" not in run.stderr
        # the default limits do not fit a stock server's share of the disk: sized, and said so
        limits = asyncio.run(stream_limits(url))
        assert sum(limits.values()) < Settings().stream_max_bytes
        assert all(v >= bus.MIN_STREAM_BYTES for v in limits.values()), limits
        assert "JetStream has less storage than ALERT_TIMING_STREAM_MAX_BYTES asks" in run.stderr
        assert "h of national traffic (610 alerts/s)" in run.stderr and "of the 7-day retention" in run.stderr
        # a second bootstrap leaves the sized streams as they are
        again = cli("bootstrap", "--nats-url", url, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert asyncio.run(stream_limits(url)) == limits


def test_a_server_too_small_for_the_streams_gets_one_line_naming_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "small.conf"
    config.write_text("jetstream { max_file_store: 3MB }\n")
    with stock_server(tmp_path / "jetstream", 0, "-c", str(config)) as url:
        run = cli("bootstrap", "--nats-url", url, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("alert-timing bootstrap: JetStream has room for "), lines
    assert "ALERT_TIMING_STREAM_MAX_BYTES" in lines[0]


def test_streams_made_with_more_storage_keep_working_on_a_stock_server(tmp_path: Path) -> None:
    """Made by the embedded server (its store limit is above the default stream limits), then
    the same store served by a stock server, which reserves far less than they hold."""
    store = tmp_path / "jetstream"

    async def bootstrap_and_publish(url: str) -> int:
        settings = Settings(nats_url=url)
        nc = await nats.connect(url)
        try:
            js = nc.jetstream(timeout=10)
            await bus.bootstrap(js, settings)
            return (await js.publish(s.IN_CSP_SOUTH, b"{}")).seq
        finally:
            await nc.close()

    with EmbeddedNats(store) as embedded:
        port = embedded.port
        assert asyncio.run(bootstrap_and_publish(embedded.url)) == 1
        made = asyncio.run(stream_limits(embedded.url))
    assert made == {**bus.stream_max_bytes(Settings()), s.STREAM_ADVISORIES: bus.ADVISORIES_MAX_BYTES}
    with stock_server(store, port) as url:
        assert asyncio.run(bootstrap_and_publish(url)) == 2
        assert asyncio.run(stream_limits(url)) == made

"""Window files delivered to a real SFTP server (OpenSSH ``sshd`` on loopback, throw-away keys):
checksums, a wrong host key, a refusing gateway, a full disk, and a whole simulated day across a
gateway restart."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.metrics.delivery import Deliverer, LandingError, SftpLanding, landing_from_settings
from tests.harness.delivery import MemoryLog, write_set
from tests.harness.sftp_server import SftpServer, available, keygen

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not available(), reason="OpenSSH sshd is not installed (make test installs it)")]

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("alert-timing")


@pytest.fixture
def gateway(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = SftpServer(tmp_path / "gateway")
    server.start()
    yield server
    server.stop()


def sftp_deliverer(server: SftpServer, data: Path, log: MemoryLog, known_hosts: Path | None = None) -> Deliverer:
    landing = landing_from_settings(server.url, str(server.user_key), str(known_hosts or server.known_hosts))
    assert isinstance(landing, SftpLanding)
    return Deliverer(landing, data, [0], log.publish, log.read_delivered, horizon_days=100_000)


def check_arrived(root: Path, data: Path) -> list[str]:
    """Every local set has its files and a matching .sha256 at the landing zone; returns the stems."""
    stems = []
    for report in sorted((data / "ast").glob("date=*/ast_*.json")):
        stem = report.stem
        folder = root / report.parent.name
        lines = (folder / f"{stem}.sha256").read_text().splitlines()
        assert [line.split("  ", 1)[1] for line in lines] == [f"{stem}.csv", f"{stem}.parquet", f"{stem}.json"]
        for line in lines:
            digest, name = line.split("  ", 1)
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
            assert (folder / name).read_bytes() == (report.parent / name).read_bytes()
        stems.append(stem)
    return stems


async def run_pass(d: Deliverer) -> int:
    try:
        return await d.deliver_pending()
    finally:
        await d.landing.close()
        d.connected = False


def test_files_and_checksums_arrive(gateway: SftpServer, tmp_path: Path) -> None:
    data, log = tmp_path / "data", MemoryLog()
    for stem in ("ast_20230601T1015_r1", "ast_20230601T1030_r1", "ast_20230601T1015_r2"):
        write_set(data, stem)
    assert asyncio.run(run_pass(sftp_deliverer(gateway, data, log))) == 3
    assert len(check_arrived(gateway.root, data)) == 3
    assert not list(gateway.root.glob("**/.*.partial"))
    assert sorted(r.file_set for r in log.receipts()) == sorted(
        ["ast_20230601T1015_r1", "ast_20230601T1030_r1", "ast_20230601T1015_r2"])


def test_a_wrong_host_key_is_refused(gateway: SftpServer, tmp_path: Path) -> None:
    data, log = tmp_path / "data", MemoryLog()
    write_set(data, "ast_20230601T1015_r1")
    other = keygen(tmp_path / "other_host")
    pub = Path(f"{other}.pub").read_text().split()
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{gateway.port} {pub[0]} {pub[1]}\n")
    with pytest.raises(LandingError, match="host key is not in ALERT_TIMING_DELIVERY_KNOWN_HOSTS"):
        asyncio.run(run_pass(sftp_deliverer(gateway, data, log, known_hosts=wrong)))
    assert not list(gateway.root.glob("**/*.csv"))
    assert not log.receipts()


def test_a_refusing_gateway_is_reported_and_retried(gateway: SftpServer, tmp_path: Path) -> None:
    data, log = tmp_path / "data", MemoryLog()
    write_set(data, "ast_20230601T1015_r1")
    gateway.restart(read_only=True)  # the gateway refuses every write (permission denied)
    d = sftp_deliverer(gateway, data, log)
    with pytest.raises(LandingError, match="cannot write"):
        asyncio.run(run_pass(d))
    assert not log.receipts()
    gateway.restart()
    assert asyncio.run(run_pass(d)) == 1
    assert check_arrived(gateway.root, data) == ["ast_20230601T1015_r1"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a small tmpfs for the full disk needs root")
def test_a_full_disk_at_the_gateway_is_reported_and_retried(gateway: SftpServer, tmp_path: Path) -> None:
    data, log = tmp_path / "data", MemoryLog()
    write_set(data, "ast_20230601T1015_r1")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(gateway.root)], check=True)
    try:
        filler = gateway.root / "filler"
        with filler.open("wb") as fh:
            try:
                fh.write(b"\0" * (1 << 20))
            except OSError:
                pass  # the disk is full
        d = sftp_deliverer(gateway, data, log)
        with pytest.raises(LandingError, match="cannot write"):
            asyncio.run(run_pass(d))
        assert not log.receipts()
        filler.unlink()
        assert asyncio.run(run_pass(d)) == 1
        assert check_arrived(gateway.root, data) == ["ast_20230601T1015_r1"]
    finally:
        subprocess.run(["umount", "-l", str(gateway.root)], check=False)


def status_json(url: str) -> dict:
    done = subprocess.run([str(CLI), "status", "--json", "--nats-url", url], capture_output=True, text=True,
                          timeout=60)
    return json.loads(done.stdout)


def test_a_simulated_day_arrives_whole_across_a_gateway_restart(gateway: SftpServer, tmp_path: Path) -> None:
    data = tmp_path / "run"
    env = os.environ | gateway.env() | {"ALERT_TIMING_DELIVERY_RETRY_MAX_S": "2"}
    up = subprocess.Popen([str(CLI), "up", "--simulate", "--keep", "--alerts", "600", "--span-hours", "6",
                           "--seed", "7", "--data-dir", str(data)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    url = None
    try:
        # the gateway goes down once some windows have arrived, and comes back a few seconds later
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(gateway.root.glob("date=*/*.sha256"))) < 3:
            time.sleep(0.1)
        assert list(gateway.root.glob("date=*/*.sha256")), "no window arrived at the gateway"
        gateway.stop()
        time.sleep(4)
        gateway.start()
        assert up.stdout is not None
        for line in up.stdout:
            if line.startswith("running; NATS_URL="):
                url = line.split("=", 1)[1].split()[0]
                break
        assert url, "alert-timing up did not finish the simulated run"
        # windows still close on the wall clock after the run: wait until every set written so far
        # has arrived and the metrics service itself says nothing is pending
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            local = sorted(p.stem for p in (data / "ast").glob("date=*/ast_*.json"))
            arrived = sorted(p.stem for p in gateway.root.glob("date=*/*.sha256"))
            delivery = status_json(url).get("delivery", [])
            if arrived == local and delivery and delivery[0]["pending"] == 0:
                break
            time.sleep(1)
        assert len(local) >= 20
        assert check_arrived(gateway.root, data) == local
        assert not list(gateway.root.glob("**/.*.partial"))
        assert delivery[0]["pending"] == 0 and delivery[0]["delivered"] == len(local)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
    logs = "".join(p.read_text() for p in (data / "logs").glob("metrics*.log"))
    assert "window delivery failed; retrying" in logs  # the outage was seen, and ridden out

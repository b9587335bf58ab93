"""Window files delivered to real SFTP servers on loopback with throw-away keys, each test against
OpenSSH's ``sshd`` and against asyncssh's own SFTP server: checksums, a set interrupted after some
files, other content at the gateway (never overwritten, the set quarantined, later sets still
go), a wrong host key, a refusing gateway, a full disk, and a whole simulated day across a
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
from tests.harness.delivery import DAY, MemoryLog, write_set
from tests.harness.sftp_server import SERVERS, SftpServer, available, keygen

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not available(), reason="OpenSSH sshd is not installed (make test installs it)")]

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("alert-timing")


@pytest.fixture(params=sorted(SERVERS))
def gateway(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    server = SERVERS[request.param](tmp_path / "gateway")
    server.start()
    yield server
    server.stop()


def sftp_deliverer(server: SftpServer, data: Path, log: MemoryLog, known_hosts: Path | None = None,
                   recheck_quarantined_s: float = 3600.0) -> Deliverer:
    landing = landing_from_settings(server.url, str(server.user_key), str(known_hosts or server.known_hosts))
    assert isinstance(landing, SftpLanding)
    return Deliverer(landing, data, [0], log.publish, log.read_delivered, horizon_days=100_000,
                     recheck_quarantined_s=recheck_quarantined_s)


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


def test_an_interrupted_set_resumes_and_keeps_what_arrived(gateway: SftpServer, tmp_path: Path) -> None:
    """The gateway went away after the first file of a set and during the second: on resume the
    file already there is compared by checksum and kept (not sent again), the rest arrives."""
    data, log = tmp_path / "data", MemoryLog()
    stem = "ast_20230601T1015_r1"
    local = write_set(data, stem)
    folder = gateway.root / f"date={DAY}"
    folder.mkdir(parents=True)
    (folder / f"{stem}.csv").write_bytes(local[0].read_bytes())  # arrived before the interruption
    (folder / f".{stem}.parquet.partial").write_bytes(b"half a")  # cut off mid-upload
    before = (folder / f"{stem}.csv").stat()
    d = sftp_deliverer(gateway, data, log)
    assert asyncio.run(run_pass(d)) == 1
    assert check_arrived(gateway.root, data) == [stem]
    after = (folder / f"{stem}.csv").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # kept, not re-sent
    assert (d.files_sent, d.files_kept) == (3, 1)  # .parquet, .json, .sha256 sent; .csv kept
    assert not list(gateway.root.glob("**/.*.partial"))
    assert [r.file_set for r in log.receipts()] == [stem]


def test_other_content_at_the_gateway_is_never_overwritten_and_blocks_only_its_set(
        gateway: SftpServer, tmp_path: Path) -> None:
    """A file of a set is at the gateway with other content: it stays as it is, the set is
    quarantined and counted, the later set goes; once the conflict is cleared the set goes too."""
    data, log = tmp_path / "data", MemoryLog()
    held, later = "ast_20230601T1015_r1", "ast_20230601T1030_r1"
    write_set(data, held)
    write_set(data, later)
    folder = gateway.root / f"date={DAY}"
    folder.mkdir(parents=True)
    (folder / f"{held}.parquet").write_bytes(b"someone else's parquet\n")
    d = sftp_deliverer(gateway, data, log, recheck_quarantined_s=0)  # examined again every pass
    assert asyncio.run(run_pass(d)) == 1
    assert (folder / f"{held}.parquet").read_bytes() == b"someone else's parquet\n"
    assert not (folder / f"{held}.sha256").exists() and not (folder / f"{held}.json").exists()
    assert [r.file_set for r in log.receipts()] == [later]
    assert (folder / f"{later}.sha256").exists()
    backlog = log.backlogs()[-1]
    assert (backlog.pending, backlog.quarantined, backlog.quarantined_file_sets) == (0, 1, [held])
    assert "other content" in d.quarantined[held][0]
    assert asyncio.run(run_pass(d)) == 0  # still there: still held
    assert (folder / f"{held}.parquet").read_bytes() == b"someone else's parquet\n"
    (folder / f"{held}.parquet").unlink()  # the operator clears it at the gateway
    assert asyncio.run(run_pass(d)) == 1
    assert check_arrived(gateway.root, data) == [held, later]
    assert log.backlogs()[-1].quarantined == 0
    assert sorted(r.file_set for r in log.receipts()) == [held, later]


def test_a_different_sha256_at_the_gateway_quarantines_only_its_set(gateway: SftpServer, tmp_path: Path) -> None:
    data, log = tmp_path / "data", MemoryLog()
    held, later = "ast_20230601T1015_r1", "ast_20230601T1030_r1"
    write_set(data, held)
    write_set(data, later)
    folder = gateway.root / f"date={DAY}"
    folder.mkdir(parents=True)
    (folder / f"{held}.sha256").write_text("0" * 64 + f"  {held}.csv\n")
    d = sftp_deliverer(gateway, data, log)
    assert asyncio.run(run_pass(d)) == 1
    assert (folder / f"{held}.sha256").read_text() == "0" * 64 + f"  {held}.csv\n"
    assert [r.file_set for r in log.receipts()] == [later]
    assert log.backlogs()[-1].quarantined_file_sets == [held]
    assert "other checksums" in d.quarantined[held][0]
    # not examined again before it is due: the next pass leaves it alone
    assert asyncio.run(run_pass(d)) == 0
    assert d.last_error is None


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

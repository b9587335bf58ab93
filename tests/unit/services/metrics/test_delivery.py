"""Delivery of window files to the DS&A landing zone: planning (pure) and the deliverer against a
directory landing zone, with NATS replaced by an in-memory event log of the same shape."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.metrics.delivery import (
    Deliverer,
    DeliveryConfigError,
    DirectoryLanding,
    FileSet,
    LandingError,
    LandingExists,
    landing_from_settings,
    local_file_sets,
    manifest,
    partition_of_stem,
    pending_sets,
)
from shared import subjects as s
from tests.harness.delivery import DAY, MemoryLog, write_set


def deliverer(data_dir: Path, landing_dir: Path, log: MemoryLog, partitions: list[int] | None = None) -> Deliverer:
    return Deliverer(DirectoryLanding(landing_dir), data_dir, partitions or [0], log.publish, log.read_delivered,
                     horizon_days=100_000)


def test_partition_of_stem() -> None:
    assert partition_of_stem("ast_20230601T1015_r1") == 0
    assert partition_of_stem("ast_20230601T1015_p3_r12") == 3
    assert partition_of_stem("ast_2023_r1") is None
    assert partition_of_stem("notes") is None


def test_only_complete_sets_are_found(tmp_path: Path) -> None:
    write_set(tmp_path, "ast_20230601T1015_r1")
    write_set(tmp_path, "ast_20230601T1030_r1", complete=False)  # report not written yet
    sets = local_file_sets(tmp_path, 8)
    assert [fs.stem for fs in sets] == ["ast_20230601T1015_r1"]
    assert [p.suffix for p in sets[0].paths] == [".csv", ".parquet", ".json"]


def test_horizon_counts_back_from_the_newest_day(tmp_path: Path) -> None:
    write_set(tmp_path, "ast_20230601T1015_r1")
    write_set(tmp_path, "ast_20230701T1015_r1", date="2023-07-01")
    write_set(tmp_path, "ast_20230625T1015_r1", date="2023-06-25")
    assert [fs.date for fs in local_file_sets(tmp_path, 8)] == ["2023-06-25", "2023-07-01"]


@given(st.lists(st.tuples(st.integers(0, 95), st.integers(0, 2), st.integers(1, 4)), unique=True, max_size=30),
       st.sets(st.integers(0, 29)))
def test_pending_is_oldest_first_and_never_what_was_delivered(keys: list[tuple[int, int, int]],
                                                             done_idx: set[int]) -> None:
    sets = [FileSet(f"ast_20230601T{q // 4:02d}{q % 4 * 15:02d}_p{p}_r{r}", DAY, p, (), 0) for q, p, r in keys]
    delivered = {sets[i].stem for i in done_idx if i < len(sets)}
    todo = pending_sets(sets, delivered, [0, 1])
    assert not {fs.stem for fs in todo} & delivered
    assert {fs.stem for fs in todo} == {fs.stem for fs in sets if fs.partition in (0, 1)} - delivered
    order = [(fs.stem[4:17], fs.partition, int(fs.stem.rsplit("_r", 1)[1])) for fs in todo]
    assert order == sorted(order)


def test_manifest_is_sha256sum_format(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"x\n")
    digest = hashlib.sha256(b"x\n").hexdigest()
    assert manifest([("a.csv", digest)]) == f"{digest}  a.csv\n".encode()


def test_settings_are_checked(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("k")
    with pytest.raises(DeliveryConfigError, match="KNOWN_HOSTS"):
        landing_from_settings("sftp://dsa@127.0.0.1:2222/in", str(key), None)
    with pytest.raises(DeliveryConfigError, match="ALERT_TIMING_DELIVERY_KEY"):
        landing_from_settings("sftp://dsa@127.0.0.1:2222/in", None, str(key))
    with pytest.raises(DeliveryConfigError, match="no such file"):
        landing_from_settings("sftp://dsa@127.0.0.1:2222/in", str(key), str(tmp_path / "missing"))
    with pytest.raises(DeliveryConfigError, match="USER@HOST"):
        landing_from_settings("sftp://127.0.0.1/in", str(key), str(key))
    with pytest.raises(DeliveryConfigError, match="use sftp"):
        landing_from_settings("ftp://x/in", None, None)
    landing = landing_from_settings(f"file://{tmp_path}/out", None, None)
    assert landing.name == f"file://{tmp_path}/out"


def test_every_set_arrives_once_with_checksums_written_last(tmp_path: Path) -> None:
    data, out, log = tmp_path / "data", tmp_path / "out", MemoryLog()
    stems = ["ast_20230601T1015_r1", "ast_20230601T1015_r2", "ast_20230601T1030_r1"]
    for stem in stems:
        write_set(data, stem)
    d = deliverer(data, out, log)
    assert asyncio.run(d.deliver_pending()) == 3
    folder = out / f"date={DAY}"
    for stem in stems:
        lines = (folder / f"{stem}.sha256").read_text().splitlines()
        assert [line.split("  ")[1] for line in lines] == [f"{stem}.csv", f"{stem}.parquet", f"{stem}.json"]
        for line in lines:
            digest, name = line.split("  ")
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
            assert (folder / name).read_bytes() == (data / "ast" / f"date={DAY}" / name).read_bytes()
    assert not list(folder.glob(".*"))  # no temporary names left behind
    assert sorted(r.file_set for r in log.receipts()) == sorted(stems)
    assert log.backlogs()[-1].pending == 0
    # a second pass, and a restarted deliverer reading the receipts back, send nothing again
    assert asyncio.run(d.deliver_pending()) == 0
    again = deliverer(data, out, log)
    assert asyncio.run(again.deliver_pending()) == 0
    assert len(log.receipts()) == 3


def test_a_set_delivered_before_its_receipt_was_stored_is_not_sent_twice(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_set(data, "ast_20230601T1015_r1")
    first = MemoryLog()
    asyncio.run(deliverer(data, out, first).deliver_pending())
    manifest_path = out / f"date={DAY}" / "ast_20230601T1015_r1.sha256"
    before = manifest_path.stat().st_mtime_ns
    lost = MemoryLog()  # the receipt never reached the log: the process died after the upload
    assert asyncio.run(deliverer(data, out, lost).deliver_pending()) == 1
    assert manifest_path.stat().st_mtime_ns == before  # not uploaded again
    assert [r.file_set for r in lost.receipts()] == ["ast_20230601T1015_r1"]


def test_other_checksums_at_the_landing_zone_are_never_overwritten(tmp_path: Path) -> None:
    data, out, log = tmp_path / "data", tmp_path / "out", MemoryLog()
    write_set(data, "ast_20230601T1015_r1")
    write_set(data, "ast_20230601T1030_r1")
    folder = out / f"date={DAY}"
    folder.mkdir(parents=True)
    (folder / "ast_20230601T1015_r1.sha256").write_text("0" * 64 + "  ast_20230601T1015_r1.csv\n")
    d = deliverer(data, out, log)
    assert asyncio.run(d.deliver_pending()) == 1  # the later set still goes
    assert (folder / "ast_20230601T1015_r1.sha256").read_text().startswith("0" * 64)
    assert [r.file_set for r in log.receipts()] == ["ast_20230601T1030_r1"]
    assert set(d.quarantined) == {"ast_20230601T1015_r1"}
    assert log.backlogs()[-1].quarantined_file_sets == ["ast_20230601T1015_r1"]


def test_a_file_with_other_content_is_never_replaced(tmp_path: Path) -> None:
    data, out, log = tmp_path / "data", tmp_path / "out", MemoryLog()
    write_set(data, "ast_20230601T1015_r1")
    folder = out / f"date={DAY}"
    folder.mkdir(parents=True)
    (folder / "ast_20230601T1015_r1.json").write_text("theirs")
    d = deliverer(data, out, log)
    assert asyncio.run(d.deliver_pending()) == 0
    assert (folder / "ast_20230601T1015_r1.json").read_text() == "theirs"
    assert not (folder / "ast_20230601T1015_r1.sha256").exists()
    assert not log.receipts() and "other content" in d.quarantined["ast_20230601T1015_r1"][0]
    assert not list(folder.glob(".*"))


def test_the_landing_zone_refuses_to_replace_a_name(tmp_path: Path) -> None:
    landing = DirectoryLanding(tmp_path)
    asyncio.run(landing.put(b"first", "d/a.csv"))
    with pytest.raises(LandingExists):
        asyncio.run(landing.put(b"second", "d/a.csv"))
    assert (tmp_path / "d" / "a.csv").read_bytes() == b"first"
    assert asyncio.run(landing.digest("d/a.csv")) == hashlib.sha256(b"first").hexdigest()
    assert asyncio.run(landing.digest("d/b.csv")) is None


def test_a_set_is_looked_at_only_while_its_receipt_is_kept(tmp_path: Path) -> None:
    """The horizon also counts on the wall clock from when the set was written (receipts are
    kept by age): a set written longer ago than the horizon is not looked at, whatever its date."""
    old = write_set(tmp_path, "ast_20230601T1015_r1")
    write_set(tmp_path, "ast_20230601T1030_r1")
    now = time.time()
    for path in old:
        os.utime(path, (now - 9 * 86_400, now - 9 * 86_400))
    assert [fs.stem for fs in local_file_sets(tmp_path, 8, int(now * 1000))] == ["ast_20230601T1030_r1"]
    assert len(local_file_sets(tmp_path, 10, int(now * 1000))) == 2


def test_a_failed_receipt_is_retried_and_nothing_is_doubled(tmp_path: Path) -> None:
    data, out, log = tmp_path / "data", tmp_path / "out", MemoryLog()
    write_set(data, "ast_20230601T1015_r1")
    d = deliverer(data, out, log)
    log.fail_next = 2  # the backlog, then the receipt: NATS unavailable
    with pytest.raises(TimeoutError):
        asyncio.run(d.deliver_pending())
    with pytest.raises(TimeoutError):
        asyncio.run(d.deliver_pending())
    assert asyncio.run(d.deliver_pending()) == 1
    assert [r.file_set for r in log.receipts()] == ["ast_20230601T1015_r1"]


def test_partitions_deliver_only_their_own_sets(tmp_path: Path) -> None:
    data, out, log = tmp_path / "data", tmp_path / "out", MemoryLog()
    write_set(data, "ast_20230601T1015_p0_r1")
    write_set(data, "ast_20230601T1015_p1_r1")
    asyncio.run(deliverer(data, out, log, partitions=[1]).deliver_pending())
    assert [(r.file_set) for r in log.receipts()] == ["ast_20230601T1015_p1_r1"]
    assert log.messages[-1].subject == s.delivery_backlog(1)


def test_an_unwritable_landing_zone_is_reported_and_retried(tmp_path: Path) -> None:
    data, out, log = tmp_path / "data", tmp_path / "out", MemoryLog()
    write_set(data, "ast_20230601T1015_r1")
    out.mkdir()
    (out / f"date={DAY}").write_text("a file where the folder should be")
    d = deliverer(data, out, log)
    with pytest.raises(LandingError, match="cannot write"):
        asyncio.run(d.deliver_pending())
    (out / f"date={DAY}").unlink()
    assert asyncio.run(d.deliver_pending()) == 1

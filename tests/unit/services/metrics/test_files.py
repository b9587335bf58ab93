"""The 15-minute files: names, atomic writes, CSV/Parquet/JSON contents, revisions."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.metrics import files
from services.metrics.core import ClosedWindow, MetricsCore
from services.metrics.files import write_window
from shared.events import RECORD_FIELDS, AnyEvent, WindowReport
from tests.harness.metrics_events import att, exp, tick


def _closed(core: MetricsCore, *events: AnyEvent) -> list[ClosedWindow]:
    return core.apply(events).closed


@pytest.fixture()
def two_revisions() -> tuple[ClosedWindow, ClosedWindow]:
    core = MetricsCore()
    first = _closed(core, exp("d2", "10:16:00.000", chf=None), att("d2", "10:16:00.040", "10:16:00.540"),
                    exp("d1", "10:15:30.000", csp_sent="+25", csp_received="+25"),
                    att("d1", "10:15:30.100", "10:15:30.300"), tick("10:40:00.000"))
    [window] = [c for c in first if c.records]
    [revision] = _closed(core, exp("d3", "10:20:00.000"))  # past its deadline: no_handshake, window r2
    return window, revision


def test_names_layout_and_contents(tmp_path: Path, two_revisions: tuple[ClosedWindow, ClosedWindow]) -> None:
    window, _ = two_revisions
    paths = write_window(tmp_path, window)
    folder = tmp_path / "ast" / "date=2023-06-01"
    assert paths == [folder / "ast_20230601T1015_r1.csv", folder / "ast_20230601T1015_r1.parquet",
                     folder / "ast_20230601T1015_r1.json"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)  # no temp files left
    assert all(p.stat().st_mode & 0o444 == 0o444 for p in paths)

    with paths[0].open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == RECORD_FIELDS
    d1, d2 = (dict(zip(rows[0], r, strict=True)) for r in rows[1:])
    assert d1["delivery_id"] == "d1" and d2["delivery_id"] == "d2"  # sorted by delivery_id
    assert d1["dsp_received"] == "2023-06-01T10:15:30.000Z"
    assert d1["flags"] == "clock_skew;csp_received_mapped" and d1["csp_to_dsp_ms"] == "-25"
    assert d2["chf_received"] == "" and d2["end_to_end_ms"] == ""
    assert d2["flags"] == "csp_received_mapped;missing_hub_timestamp"

    table = pq.read_table(paths[1])
    assert table.schema.names == list(RECORD_FIELDS)
    assert table.schema.field("dsp_received").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("su_acknowledged").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("flags").type == pa.list_(pa.string())
    got = table.to_pylist()
    assert [r["delivery_id"] for r in got] == ["d1", "d2"]
    assert got[0]["dsp_received"].isoformat() == "2023-06-01T10:15:30+00:00"
    assert got[0]["su_acknowledged"].isoformat(timespec="milliseconds") == "2023-06-01T10:15:30.300+00:00"
    assert got[1]["chf_received"] is None and got[1]["end_to_end_ms"] is None
    assert got[0]["flags"] == ["clock_skew", "csp_received_mapped"]

    report = msgspec.json.decode(paths[2].read_bytes(), type=WindowReport)
    assert report == window.report


def test_a_revision_writes_new_files_and_leaves_the_old(tmp_path: Path,
                                                        two_revisions: tuple[ClosedWindow, ClosedWindow]) -> None:
    window, revision = two_revisions
    old = write_window(tmp_path, window)
    before = {p: p.read_bytes() for p in old}
    new = write_window(tmp_path, revision)
    assert [p.name for p in new] == ["ast_20230601T1015_r2.csv", "ast_20230601T1015_r2.parquet",
                                     "ast_20230601T1015_r2.json"]
    assert {p: p.read_bytes() for p in old} == before
    assert pq.read_table(new[1]).num_rows == 3


def test_empty_window_files(tmp_path: Path) -> None:
    core = MetricsCore()
    [closed] = _closed(core, tick("10:00:00.000"), tick("10:25:00.000"))
    csv_path, parquet_path, _json_path = write_window(tmp_path, closed)
    assert csv_path.read_text().splitlines() == [",".join(RECORD_FIELDS)]
    assert pq.read_table(parquet_path).num_rows == 0
    assert pq.read_table(parquet_path).schema == files.PARQUET_SCHEMA


def test_failed_write_leaves_no_partial_file(tmp_path: Path, two_revisions: tuple[ClosedWindow, ClosedWindow],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    window, _ = two_revisions

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.pq, "write_table", boom)
    with pytest.raises(OSError):
        write_window(tmp_path, window)
    folder = tmp_path / "ast" / "date=2023-06-01"
    assert [p.name for p in folder.iterdir()] == ["ast_20230601T1015_r1.csv"]  # complete, or absent
    assert not any(name.endswith(".tmp") for name in os.listdir(folder))

"""The 15-minute files for DS&A: a closed window's records (CSV and Parquet) and its report (JSON).

Layout: ``<data_dir>/ast/date=YYYY-MM-DD/ast_YYYYMMDDTHHMM_r<revision>.{csv,parquet,json}``,
the date and time being the window start (UTC). With more than one metrics partition every
partition reports the same windows for its own deliveries, so its files carry the partition:
``ast_YYYYMMDDTHHMM_p<partition>_r<revision>.*``; a reader takes the latest revision of each
(window, partition) and combines the partitions (``alert_timing.report``). Every file is written to
a temporary name in the same directory and renamed into place, so a reader never sees half a
file. A revision writes new files next to the old ones; nothing is ever edited.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from services.metrics.core import ClosedWindow
from shared.events import RECORD_FIELDS, TIMING_POINTS, AstRecord, encoder
from shared.settings import load
from shared.timefmt import from_ms

__all__ = ["PARQUET_SCHEMA", "file_stem", "partition_tag", "records_table", "window_dir", "write_window"]

_INT_FIELDS = {"v", "revision", "comms_hub_id", "hub_to_csp_ms", "csp_to_dsp_ms", "dsp_to_su_ms",
               "su_handshake_ms", "end_to_end_ms", "delivery_attempts", "throttled_count"}


def _field_type(name: str) -> pa.DataType:
    if name in TIMING_POINTS:
        return pa.timestamp("ms", tz="UTC")
    if name == "flags":
        return pa.list_(pa.string())
    if name in _INT_FIELDS:
        return pa.int64()
    return pa.string()


#: The Parquet columns: the AstRecord fields in order, timing points as UTC timestamps.
PARQUET_SCHEMA = pa.schema([pa.field(name, _field_type(name)) for name in RECORD_FIELDS])


def window_dir(data_dir: Path, start_ms: int) -> Path:
    return Path(data_dir) / "ast" / f"date={from_ms(start_ms).strftime('%Y-%m-%d')}"


def file_stem(start_ms: int, revision: int, partition: int | None = None) -> str:
    """``ast_YYYYMMDDTHHMM_r<n>``; ``ast_YYYYMMDDTHHMM_p<partition>_r<n>`` for a partition's files."""
    tag = "" if partition is None else f"_p{partition}"
    return f"ast_{from_ms(start_ms).strftime('%Y%m%dT%H%M')}{tag}_r{revision}"


def partition_tag(partition: int, partitions: int | None = None) -> int | None:
    """The partition to put in a window's file names: None for the single-partition default
    (``ast_..._r<n>``). ``partitions``: how many there are (default: the settings). A partition
    other than 0 is always named, so partitions never write over each other's files."""
    if partitions is None:
        partitions = load().metrics_partitions
    return partition if partitions > 1 or partition != 0 else None


def records_table(records: list[AstRecord]) -> pa.Table:
    columns = {name: [getattr(r, name) for r in records] for name in RECORD_FIELDS}
    arrays = []
    for name in RECORD_FIELDS:
        values = columns[name]
        if name in TIMING_POINTS:  # ISO 8601 text -> timestamp[ms, UTC]
            arrays.append(pa.array(values, pa.string()).cast(pa.timestamp("ms", tz="UTC")))
        else:
            arrays.append(pa.array(values, _field_type(name)))
    return pa.Table.from_arrays(arrays, schema=PARQUET_SCHEMA)


def _csv_bytes(records: list[AstRecord]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RECORD_FIELDS)
    for r in records:
        row = []
        for name in RECORD_FIELDS:
            value = getattr(r, name)
            if name == "flags":
                value = ";".join(value)
            row.append("" if value is None else value)
        writer.writerow(row)
    return buffer.getvalue().encode()


def _write_atomic(path: Path, data: bytes | None = None, table: pa.Table | None = None) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the files are for DS&A readers
        with os.fdopen(fd, "wb") as fh:
            if table is not None:
                pq.write_table(table, fh, compression="zstd")
            else:
                fh.write(data or b"")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_window(data_dir: Path, closed: ClosedWindow, partition: int | None = None) -> list[Path]:
    """Write the window's records (CSV, Parquet) and report (JSON); return the three paths.
    ``partition``: the metrics partition that closed it, None when there is only one."""
    folder = window_dir(Path(data_dir), closed.start_ms)
    folder.mkdir(parents=True, exist_ok=True)
    stem = file_stem(closed.start_ms, closed.report.revision, partition)
    csv_path = folder / f"{stem}.csv"
    parquet_path = folder / f"{stem}.parquet"
    json_path = folder / f"{stem}.json"
    _write_atomic(csv_path, _csv_bytes(closed.records))
    _write_atomic(parquet_path, table=records_table(closed.records))
    _write_atomic(json_path, encoder.encode(closed.report) + b"\n")  # last: marks the window complete
    return [csv_path, parquet_path, json_path]

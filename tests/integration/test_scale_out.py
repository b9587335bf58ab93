"""Scale-out: more replicas of each stateless service sharing their durable consumers, metrics
split into partitions, give the same AST records and the same DS&A report as one process of each.

The pure part (naming, combining partitions' files, the simulator's window count, replica
assignment) runs without a server; the end-to-end comparison runs two topologies, each on its
own fresh nats-server, with the same seeded traffic.

What "the same" means: every delivery's latest record is equal in every field but
``revision``. The revision counts how often a record was published, and that depends on
arrival order, which replicas change by design: two dsp-mapping replicas may publish a
retry's acknowledgement before the failed attempt it follows (record, then revision 2 with
two attempts), or the closing clock tick before the last attempts (no_handshake, then revised
to complete). The content a revision converges to does not depend on the order.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import nats
import nats.errors
import pytest
from nats.js import api

from alert_timing import report
from alert_timing.simulator.run import report_partition, run_traffic, windows_due
from alert_timing.simulator.traffic import Inbound, Traffic, TrafficConfig
from alert_timing.supervisor import Supervisor, metrics_assignment, parse_replicas, run_bootstrap
from alert_timing_benchmarks.metrics_core import synthetic_events
from services.metrics.app import emit, partitions_owned
from services.metrics.core import MetricsCore
from services.metrics.files import file_stem, partition_tag
from services.runtime.service import Emitter
from shared import bus
from shared import subjects as s
from shared.events import ClockTick, DeliveryAttempted, DeliveryExpected, RejectedInput, record_decoder
from shared.settings import ConfigError, load
from shared.timefmt import parse_iso

PARTITIONS = 2
ALERTS = 3000
SEED = 20230601
CSV_NAMES = ("summary", "by_region", "by_category", "by_alert_code", "by_dcc_alert_code", "by_day",
             "by_interval", "completeness", "latency_histogram")


# ------------------------------------------------------------------------------ pure


def test_file_names_carry_the_partition_only_when_there_are_several() -> None:
    start = parse_iso("2023-06-01T10:15:00Z")
    assert file_stem(start, 1) == "ast_20230601T1015_r1"  # the single-partition default, unchanged
    assert file_stem(start, 1, 1) == "ast_20230601T1015_p1_r1"
    assert file_stem(start, 3, 0) == "ast_20230601T1015_p0_r3"
    assert partition_tag(0, 1) is None
    assert [partition_tag(p, 2) for p in range(2)] == [0, 1]
    assert partition_tag(1, 1) == 1  # never written over partition 0's files, whatever the count says


def test_default_partition_count_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_TIMING_METRICS_PARTITIONS", "4")
    assert partition_tag(0) == 0
    monkeypatch.setenv("ALERT_TIMING_METRICS_PARTITIONS", "1")
    assert partition_tag(0) is None


def test_a_replica_owns_one_partition_or_all_and_no_other() -> None:
    assert partitions_owned(load(metrics_partitions=3)) == [0, 1, 2]
    assert partitions_owned(load(metrics_partitions=3, metrics_partition=2)) == [2]
    with pytest.raises(ConfigError, match="not one of the 2 partitions"):
        partitions_owned(load(metrics_partitions=2, metrics_partition=2))
    with pytest.raises(ConfigError, match="at least 1"):
        partitions_owned(load(metrics_partitions=0))


def test_replicas_option_and_metrics_assignment() -> None:
    assert parse_replicas(["hub-capture=2", "dsp-mapping=3", "hub-capture=4"]) == {
        "hub-capture": 4, "dsp-mapping": 3}
    for bad in ("hub-capture", "nope=2", "metrics=0", "metrics=x"):
        with pytest.raises(ValueError, match="SERVICE=N"):
            parse_replicas([bad])
    assert metrics_assignment(1, 1) == [None]
    assert metrics_assignment(3, 1) == [None]  # one process owns every partition
    assert metrics_assignment(3, 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="one per partition"):
        metrics_assignment(3, 2)
    with pytest.raises(ValueError, match="metrics replicas"):
        Supervisor(load(metrics_partitions=1), Path("unused"), None, replicas={s.METRICS: 2})
    with pytest.raises(ValueError, match="no such service"):
        Supervisor(load(), Path("unused"), None, replicas={"metric": 2})


def test_replicas_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_TIMING_METRICS_PARTITION", "1")  # not inherited by a process owning all
    sup = Supervisor(load(metrics_partitions=2), tmp_path, "nats://127.0.0.1:1", replicas={s.METRICS: 2},
                     extra_env={"ALERT_TIMING_BATCH_SIZE": "64"})
    assert sup.metrics_assignment == [0, 1]
    env = sup.env()
    assert env["ALERT_TIMING_METRICS_PARTITIONS"] == "2" and env["ALERT_TIMING_METRICS_PARTITION"] == ""
    assert env["ALERT_TIMING_BATCH_SIZE"] == "64"
    assert sup.env(ALERT_TIMING_METRICS_PARTITION="1")["ALERT_TIMING_METRICS_PARTITION"] == "1"


def test_report_partition_from_the_message_id() -> None:
    assert report_partition({"Nats-Msg-Id": "report:1:2023-06-01T10:15:00.000Z:2"}) == 1
    assert report_partition({"Nats-Msg-Id": "report:0:2023-06-01T10:15:00.000Z:1"}) == 0
    assert report_partition(None) == 0


def test_windows_due_per_partition() -> None:
    """Each partition must report every window from its first delivery's to its last's;
    partition 0 also holds the service responses. ``a`` hashes to partition 1, ``d`` to 0."""
    t0 = parse_iso("2023-06-01T10:00:00Z")
    assert (s.partition_of("a", 2), s.partition_of("d", 2)) == (1, 0)
    traffic = Traffic(inputs=[
        Inbound(s.IN_CSP_NORTH, b"", {}, "r1", "alert", t0 + 60_000, ("a",)),
        Inbound(s.IN_CSP_NORTH, b"", {}, "r2", "alert", t0 + 50 * 60_000, ("a", "d")),
        Inbound(s.IN_CSP_NORTH, b"", {}, "r3", "service_response", t0 + 20 * 60_000),
        Inbound(s.IN_CSP_NORTH, b"", {}, "r4", "malformed", t0 + 99 * 60_000, ("bad_json",)),
    ])
    w = [f"2023-06-01T10:{m:02d}:00.000Z" for m in (0, 15, 30, 45)]
    assert windows_due(traffic) == {0: set(w)}
    assert windows_due(traffic, 2) == {1: set(w), 0: set(w[1:])}


def _partition_events(events: list[object], partitions: int) -> dict[int, list[object]]:
    """What each partition's durable consumer reads: its deliveries, every clock tick, and
    (partition 0) the service responses and rejections."""
    out: dict[int, list[object]] = {p: [] for p in range(partitions)}
    for e in events:
        if isinstance(e, (DeliveryExpected, DeliveryAttempted)):
            out[s.partition_of(e.delivery_id, partitions)].append(e)
        elif isinstance(e, ClockTick):
            for p in out:
                out[p].append(e)
        else:
            out[0].append(e)
    return out


def _write(data_dir: Path, events: list[object], partitions: int) -> None:
    for p, mine in _partition_events(events, partitions).items():
        core = MetricsCore()
        for i in range(0, len(mine), 500):  # batches, as the service sees them
            emit(core.apply(mine[i:i + 500]), Emitter(), data_dir, p, partitions=partitions)


def test_report_combines_the_partitions_files(tmp_path: Path) -> None:
    """The same events through one core, and split over three partitions' cores: the report
    reads every partition's latest revisions and gives the same figures."""
    events: list[object] = list(synthetic_events(3000, span_ms=4 * 3_600_000, seed=3))
    day0 = min(e.dsp_received for e in events if isinstance(e, DeliveryExpected))
    events.insert(100, RejectedInput(event_id="rj:1", stage="hub-capture", reason="bad_json", message="{",
                                     subject=s.IN_CSP_NORTH, dsp_received=day0 + 600_000))
    events.append(ClockTick(event_id="tick:end", time=day0 + 6 * 3_600_000))
    one, three = tmp_path / "one", tmp_path / "three"
    _write(one, events, 1)
    _write(three, events, 3)

    names_one = {p.name for p in (one / "ast").rglob("ast_*")}
    names_three = {p.name for p in (three / "ast").rglob("ast_*")}
    assert names_one and all("_p" not in n for n in names_one)
    assert {n.split("_")[2] for n in names_three} == {"p0", "p1", "p2"}

    start, end = parse_iso("2000-01-01T00:00:00Z"), parse_iso("2100-01-01T00:00:00Z")
    parquet, reports = report.select_files(three, start, end)
    by_window = report.window_partitions(parquet)
    assert by_window and all(held == {0, 1, 2} for held in by_window.values())
    assert report.window_partitions(reports) == by_window
    got_one = report.build_report(one, start, end, tmp_path / "out-one", progress=False)
    got_three = report.build_report(three, start, end, tmp_path / "out-three", progress=False)
    assert got_one["records"] == got_three["records"] == 3000
    assert got_one["windows"] == got_three["windows"] == len(by_window)
    assert got_three["partitions"] == [0, 1, 2]
    for name in CSV_NAMES:
        assert (tmp_path / "out-one" / f"{name}.csv").read_text() == \
            (tmp_path / "out-three" / f"{name}.csv").read_text(), name
    summary = (tmp_path / "out-three" / "summary.csv").read_text().splitlines()
    row = dict(zip(summary[0].split(","), summary[1].split(","), strict=True))
    assert row["rejected"] == "1" and int(row["service_responses_seen"]) == 60


def test_report_reads_the_latest_revision_of_each_partition(tmp_path: Path) -> None:
    folder = tmp_path / "ast" / "date=2023-06-01"
    folder.mkdir(parents=True)
    for name in ("ast_20230601T1015_p0_r1", "ast_20230601T1015_p0_r2", "ast_20230601T1015_p1_r1",
                 "ast_20230601T1030_p1_r3", "ast_20230601T1030_r1"):
        for kind in ("parquet", "json"):
            (folder / f"{name}.{kind}").write_bytes(b"")
    parquet, reports = report.select_files(tmp_path, parse_iso("2023-06-01T10:15:00Z"),
                                           parse_iso("2023-06-01T10:45:00Z"))
    assert [p.name for p in parquet] == ["ast_20230601T1015_p0_r2.parquet", "ast_20230601T1015_p1_r1.parquet",
                                         "ast_20230601T1030_r1.parquet", "ast_20230601T1030_p1_r3.parquet"]
    assert [p.name for p in reports] == [p.name.replace(".parquet", ".json") for p in parquet]


# ----------------------------------------------------------------------- end to end


class Outcome(msgspec.Struct):
    records: dict[str, dict]  # delivery id -> latest record (as JSON)
    deliveries: set[str]  # what the traffic should give
    expected_per_partition: dict[str, int]  # ast.expected.<p> -> messages (envelopes) stored
    metrics_acked: dict[str, int]  # durable -> messages it acknowledged
    files: list[str]
    complete: bool
    seconds: float
    dead: list[str]


async def _drained(url: str, partitions: int, timeout: float = 60.0) -> dict[str, int]:
    """Wait until every durable consumer has nothing pending or unacknowledged and the output
    stream stands still; return each metrics durable's acknowledged stream sequence."""
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last, still = -1, 0
        while loop.time() < deadline:
            infos = {spec.durable: await js.consumer_info(spec.stream, spec.durable)
                     for spec in bus.consumer_specs(partitions)}
            idle = all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos.values())
            out = (await js.stream_info(s.STREAM_OUT)).state.last_seq
            still = still + 1 if idle and out == last else 0
            if still >= 3:
                break
            last = out
            await asyncio.sleep(0.5)
        return {d: (i.ack_floor.consumer_seq if i.ack_floor else 0) for d, i in infos.items()
                if d.startswith(f"{s.METRICS}-")}
    finally:
        await nc.close()


async def _latest_records(url: str) -> tuple[dict[str, dict], dict[str, int]]:
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10)
    try:
        per_subject = (await js.stream_info(s.STREAM_EVENTS, subjects_filter=f"{s.EXPECTED}.*")).state.subjects or {}
        sub = await js.pull_subscribe("", stream=s.STREAM_OUT, config=api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL, filter_subjects=[s.RECORD],
            inactive_threshold=30.0, mem_storage=True))
        total = (await sub.consumer_info()).num_pending
        latest: dict[str, dict] = {}
        got = 0
        while got < total:
            try:
                msgs = await sub.fetch(min(2000, total - got), timeout=2)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            for m in msgs:
                rec = msgspec.to_builtins(record_decoder.decode(m.data))
                held = latest.get(rec["delivery_id"])
                if held is None or rec["revision"] > held["revision"]:
                    latest[rec["delivery_id"]] = rec
            got += len(msgs)
        await sub.unsubscribe()
        return latest, dict(per_subject)
    finally:
        await nc.close()


def _run_topology(data_dir: Path, partitions: int, replicas: dict[str, int]) -> Outcome:
    started = time.perf_counter()
    base = load(data_dir=str(data_dir), metrics_partitions=partitions)
    sup = Supervisor(base, data_dir, None, replicas=replicas, extra_env={"ALERT_TIMING_LOG_LEVEL": "WARNING"})
    try:
        url = sup.start_server()
        settings = load(nats_url=url, data_dir=str(data_dir), metrics_partitions=partitions)
        run_bootstrap(settings)
        sup.start_services()
        config = TrafficConfig(alerts=ALERTS, seed=SEED, span_ms=3 * 3_600_000, storm_at_ms=3_600_000,
                               malformed_share=0.01, duplicate_share=0.02)
        result = asyncio.run(run_traffic(settings, config, wait_s=90, show=False))
        acked = asyncio.run(_drained(url, partitions))
        records, per_subject = asyncio.run(_latest_records(url))
        dead = sup.check()
    finally:
        sup.stop()
    files = sorted(p.name for p in (data_dir / "ast").rglob("ast_*")) if (data_dir / "ast").is_dir() else []
    return Outcome(records=records, deliveries=result.traffic.expected_deliveries,
                   expected_per_partition=per_subject, metrics_acked=acked, files=files,
                   complete=result.complete, seconds=round(time.perf_counter() - started, 1), dead=dead)


def _content(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "revision"}


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_scaled_out_topology_gives_the_same_records_and_report(tmp_path: Path) -> None:
    single = _run_topology(tmp_path / "single", 1, {})
    scaled = _run_topology(tmp_path / "scaled", PARTITIONS, {
        s.HUB_CAPTURE: 2, s.CSP_ENRICHMENT: 2, s.DSP_MAPPING: 2, s.METRICS: PARTITIONS})
    for name, run in (("single", single), ("scaled", scaled)):
        assert run.complete, f"{name}: not every record or window report came out ({run.seconds} s)"
        assert not run.dead, f"{name}: services died: {run.dead}"

    # The same deliveries, and each one's latest record equal in every field but the revision.
    assert set(single.records) == single.deliveries == scaled.deliveries == set(scaled.records)
    assert len(single.records) > ALERTS * 0.8
    differ = [d for d in single.records if _content(single.records[d]) != _content(scaled.records[d])]
    assert not differ, (len(differ), single.records[differ[0]], scaled.records[differ[0]])

    # Both partitions did work: their subjects hold expectations, their durables acknowledged them.
    assert set(single.expected_per_partition) == {s.expected(0)}
    assert set(scaled.expected_per_partition) == {s.expected(p) for p in range(PARTITIONS)}
    assert all(n > 0 for n in scaled.expected_per_partition.values())
    assert set(scaled.metrics_acked) == {bus.metrics_durable(p) for p in range(PARTITIONS)}
    assert all(seq > 0 for seq in scaled.metrics_acked.values()), scaled.metrics_acked
    by_partition = {p: sum(1 for d in scaled.records if s.partition_of(d, PARTITIONS) == p)
                    for p in range(PARTITIONS)}
    assert all(n > 0 for n in by_partition.values()), by_partition

    # Files: the plain names with one partition, every partition named with two.
    assert single.files and not any("_p" in f for f in single.files)
    assert {f.split("_")[2] for f in scaled.files} == {f"p{p}" for p in range(PARTITIONS)}

    # The DS&A report combines the partitions' files into the same figures.
    start, end = parse_iso("2000-01-01T00:00:00Z"), parse_iso("2100-01-01T00:00:00Z")
    got = {name: report.build_report(tmp_path / name, start, end, tmp_path / f"report-{name}", progress=False)
           for name in ("single", "scaled")}
    assert got["single"]["records"] == got["scaled"]["records"] == len(single.records)
    assert got["scaled"]["partitions"] == list(range(PARTITIONS))
    for name in CSV_NAMES:
        assert (tmp_path / "report-single" / f"{name}.csv").read_text() == \
            (tmp_path / "report-scaled" / f"{name}.csv").read_text(), name

"""Costs that do not grow with history, on a real nats-server: the trace index (read by
sequence, not by scanning), rejections kept whole as the CSP sent them, stream limits."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import msgspec
import nats
import pytest

from alert_timing.nats_server import EmbeddedNats
from services.metrics.rebuild import republish
from services.runtime.service import Emitter
from shared import bus
from shared import subjects as s
from shared.eventlog import messages_on_subject
from shared.events import IndexEntry
from shared.settings import Settings
from tests.harness.frames import ACB_EUI, alert_payload, delivery_line, north
from tests.harness.jetstream import collect, decoded, send
from tests.integration.test_ops import DSP, deliveries_for, run_ops, unique

pytestmark = [pytest.mark.integration]

#: The stages that write trace index entries: hub-capture for the input, metrics for the record.
INDEXING_STAGES = {s.HUB_CAPTURE, s.METRICS}


@pytest.mark.usefixtures("pipeline")
async def test_trace_reads_through_the_index_by_response_and_by_delivery_id(js, nats_server):
    rid = unique("IDX")
    await send(js, s.IN_CSP_NORTH, north(rid), DSP)
    [delivery] = await deliveries_for(js, rid, 1)
    await send(js, s.IN_DSP_DELIVERY, delivery_line(rid, rid, passed="20230601101502.700",
                                                    acked="20230601101503.100", user=delivery["serviceUserId"]))
    # the index entries as the stages wrote them: one per fact, the input's and the record's
    want = INDEXING_STAGES
    got = await collect(js, s.STREAM_INDEX, [s.index_subject(rid)],
                        lambda m: {msgspec.json.decode(x.data, type=IndexEntry).stage for x in m} >= want)
    entries = [msgspec.json.decode(m.data, type=IndexEntry) for m in got]
    assert {e.stage for e in entries} >= want
    where = {st for e in entries for st, _ in e.at}
    assert where == {s.STREAM_IN, s.STREAM_EVENTS, s.STREAM_OUT}

    code, out, err = await run_ops(nats_server.url, "trace", rid, "--json")
    assert code == 0, err
    journey = json.loads(out)
    assert journey["indexed"] and journey["scanned"] == {"index": len({at for e in entries for at in e.at})}
    kinds = [e["kind"] for e in journey["events"]]
    for kind in ("inbound", "alert_captured", "alert_enriched", "delivery_expected", "deliver",
                 "delivery_log", "delivery_attempted", "record"):
        assert kind in kinds, kinds
    # the same journey as a scan of the whole log
    code, out, err = await run_ops(nats_server.url, "trace", rid, "--json", "--scan")
    assert code == 0, err
    scanned = json.loads(out)
    assert not scanned["indexed"]
    assert scanned["events"] == journey["events"] and scanned["deliveries"] == journey["deliveries"]


@pytest.mark.usefixtures("pipeline")
async def test_trace_by_a_dcc_delivery_id(js, nats_server):
    rid = unique("IDX-ACB")
    await send(js, s.IN_CSP_NORTH, north(rid, payload=alert_payload("8F3F", recipient=ACB_EUI)), DSP)
    await deliveries_for(js, rid, 2)
    code, out, err = await run_ops(nats_server.url, "trace", f"{rid}:N39:1", "--json")
    assert code == 0, err
    journey = json.loads(out)
    assert journey["indexed"] and journey["response_id"] == rid
    assert f"{rid}:N39:1" in [d["delivery_id"] for d in journey["deliveries"]]


@pytest.mark.usefixtures("pipeline")
async def test_an_alert_rejected_downstream_comes_out_as_the_csp_sent_it(js, nats_server):
    """A Base64 payload that is not GBCS passes hub-capture and is rejected by csp-enrichment:
    the rejection carries the inbound bytes, subject and headers, not the captured event."""
    rid = unique("WHOLE")
    data = north(rid, payload=base64.b64encode(b"not a GBCS frame at all").decode(), extra_field="kept")
    headers = {**DSP, "X-Source": "gateway-7"}
    ack = await js.publish(s.IN_CSP_NORTH, data, headers=headers)
    msgs = await collect(js, s.STREAM_EVENTS, [s.rejected(s.CSP_ENRICHMENT)],
                         lambda got: any(r["source_seq"] == ack.seq for r in decoded(got)))
    [rejection] = [r for r in decoded(msgs) if r["source_seq"] == ack.seq]
    assert rejection["reason"] == "bad_gbcs"
    assert base64.b64decode(rejection["raw"]) == data  # byte for byte
    assert rejection["subject"] == s.IN_CSP_NORTH
    assert {k: rejection["headers"].get(k) for k in headers} == headers
    # and the trace finds it through the index
    code, out, err = await run_ops(nats_server.url, "trace", rid, "--json")
    assert code == 0, err
    journey = json.loads(out)
    assert journey["indexed"] and [r["reason"] for r in journey["rejections"]] == ["bad_gbcs"]


def test_stream_limits_split_the_budget_by_what_an_alert_stores() -> None:
    limits = bus.stream_max_bytes(Settings())
    assert set(limits) == set(s.STREAM_SUBJECTS)
    assert sum(limits.values()) <= Settings().stream_max_bytes
    per_alert = bus.STREAM_BYTES_PER_ALERT
    # every stream fills after the same number of alerts (within rounding)
    alerts = {name: limits[name] / per_alert[name] for name in limits}
    assert max(alerts.values()) - min(alerts.values()) < 1
    for config in bus.stream_configs(Settings()):
        assert config.max_bytes and config.max_age and config.discard == bus.api.DiscardPolicy.OLD


async def test_a_full_stream_discards_its_oldest_messages_and_keeps_accepting(tmp_path: Path) -> None:
    """The stated behaviour at a limit: publishing never fails, the oldest history goes."""
    with EmbeddedNats(tmp_path / "jetstream") as server:
        # the smallest budget: each stream gets its floor of 1 MiB
        settings = Settings(nats_url=server.url, stream_max_bytes=1)
        nc = await bus.connect(settings, "test")
        try:
            js = nc.jetstream(timeout=10)
            await bus.bootstrap(js, settings)
            info = await js.stream_info(s.STREAM_IN)
            assert info.config.max_bytes == 1024 * 1024
            body = b"x" * 10_000
            acks = [await js.publish(s.IN_CSP_SOUTH, body + str(i).encode()) for i in range(300)]  # ~3 MB
            assert [a.seq for a in acks] == list(range(1, 301))  # every publish accepted
            state = (await js.stream_info(s.STREAM_IN)).state
            assert state.bytes <= 1024 * 1024
            assert state.last_seq == 300 and state.first_seq > 1  # the oldest were discarded
            newest = await js.get_msg(s.STREAM_IN, 300)
            assert newest.data == body + b"299"
            with pytest.raises(nats.js.errors.NotFoundError):
                await js.get_msg(s.STREAM_IN, 1)
        finally:
            await nc.close()


async def _through(js, rid: str, n: int, payload: str | None = None) -> list[dict]:
    """One alert in, each of its ``n`` deliveries acknowledged, until its records and every
    stage's trace index entry are stored; its deliver notices."""
    extra = {"payload": payload} if payload else {}
    await send(js, s.IN_CSP_NORTH, north(rid, **extra), DSP)
    deliveries = await deliveries_for(js, rid, n)
    for d in deliveries:
        await send(js, s.IN_DSP_DELIVERY, delivery_line(d["deliveryId"], rid, passed="20230601101502.700",
                                                        acked="20230601101503.100", dcc=d["dccAlertCode"],
                                                        user=d["serviceUserId"]))
    await collect(js, s.STREAM_OUT, [s.RECORD],
                  lambda got: sum(1 for r in decoded(got) if r["response_id"] == rid) >= n)

    def indexed(got) -> bool:
        entries = [msgspec.json.decode(m.data, type=IndexEntry) for m in got]
        records = {at for e in entries if e.response_id == rid for at in e.at if at[0] == s.STREAM_OUT}
        return {e.stage for e in entries if e.response_id == rid} >= INDEXING_STAGES and len(records) >= n

    await collect(js, s.STREAM_INDEX, [s.index_subject(rid)], indexed)
    return deliveries


async def _trace(url: str, rid: str, *argv: str) -> dict:
    code, out, err = await run_ops(url, "trace", rid, "--json", *argv)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.usefixtures("pipeline")
async def test_trace_shows_every_point_when_index_entries_are_lost(js, nats_server):
    """Index entries purged (JetStream purge by subject, as a lost or discarded entry looks):
    trace knows from the record which points the journey must have, finds the ones the index
    no longer names in a bounded scan from the input's store time, and shows the same
    journey as a scan of the whole log."""
    only_record, half, acb = unique("LOST-1"), unique("LOST-2"), unique("LOST-ACB")
    await _through(js, only_record, 1)
    await _through(js, half, 1)
    await _through(js, acb, 2, payload=alert_payload("8F3F", recipient=ACB_EUI))
    # the newest entry (metrics' record) kept: the input and capture are no longer indexed;
    # or the newest (the record's) deleted: only the input's entry is left
    await js.purge_stream(s.STREAM_INDEX, subject=s.index_subject(only_record), keep=1)
    newest = await js.get_last_msg(s.STREAM_INDEX, s.index_subject(half))
    assert msgspec.json.decode(newest.data, type=IndexEntry).stage == s.METRICS
    await js.delete_msg(s.STREAM_INDEX, newest.seq)
    await js.purge_stream(s.STREAM_INDEX, subject=s.index_subject(acb), keep=1)

    for rid, n in ((only_record, 1), (half, 1), (acb, 2)):
        journey = await _trace(nats_server.url, rid)
        kinds = {e["kind"] for e in journey["events"]}
        assert kinds >= {"inbound", "alert_captured", "alert_enriched", "delivery_expected", "deliver",
                         "delivery_log", "delivery_attempted", "record"}, kinds
        assert len(journey["deliveries"]) == n
        for d in journey["deliveries"]:
            assert d["status"] == "complete" and d["deliver_notice"], d
            assert [r["status"] for r in d["records"]] == ["complete"], d
        scanned = await _trace(nats_server.url, rid, "--scan")
        assert journey["events"] == scanned["events"] and journey["deliveries"] == scanned["deliveries"]
        assert journey["indexed"] and journey["filled_in"] is not None and journey["not_found"] == []


@pytest.mark.usefixtures("pipeline")
async def test_trace_names_in_one_line_the_point_it_cannot_find(js, nats_server):
    """A point the record says exists but the log no longer holds (here the delivery-log line,
    deleted as a stream limit would): one line says what is missing."""
    rid = unique("LOST-LINE")
    await _through(js, rid, 1)
    lines = await collect(js, s.STREAM_IN, [s.IN_DSP_DELIVERY],
                          lambda got: any(json.loads(m.data)["responseId"] == rid for m in got))
    [line] = [m for m in lines if json.loads(m.data)["responseId"] == rid]
    await js.delete_msg(s.STREAM_IN, line.metadata.sequence.stream)

    code, text, err = await run_ops(nats_server.url, "trace", rid)
    assert code == 0, err
    assert [x for x in text.splitlines() if x.startswith("not found:")] == [f"not found: delivery_log of {rid}"]
    journey = await _trace(nats_server.url, rid)
    assert journey["not_found"] == [f"delivery_log of {rid}"]


async def test_a_record_republished_by_a_rebuild_is_indexed(tmp_path: Path) -> None:
    """The metrics rebuild publishes the outputs of a predecessor's last batch again: their
    trace index entries go with them (once, however often it runs)."""
    with EmbeddedNats(tmp_path / "jetstream") as server:
        settings = Settings(nats_url=server.url)
        nc = await bus.connect(settings, "test")
        try:
            js = nc.jetstream(timeout=10)
            await bus.bootstrap(js, settings)
            for _ in range(2):
                out = Emitter()
                out.single(s.RECORD, b'{"response_id": "RB-1"}', "record:RB-1:1", key="RB-1")
                assert await republish(js, out, 10.0) == 1
            entries = [msgspec.json.decode(m.data, type=IndexEntry)
                       for m in await messages_on_subject(nc, s.STREAM_INDEX, s.index_subject("RB-1"))]
            assert entries == [IndexEntry(stage=s.METRICS, at=[(s.STREAM_OUT, 1)], response_id="RB-1")]
        finally:
            await nc.close()


@pytest.mark.usefixtures("pipeline")
async def test_an_alert_costs_the_index_two_entries_the_input_and_the_record(js, nats_server):
    """One index entry per fact, not per stage: an alert delivered and acknowledged has the
    input's entry (hub-capture) and the record's (metrics), and trace still shows every point."""
    rids = [unique(f"TWO-{i}") for i in range(4)]
    for rid in rids:
        await _through(js, rid, 1)
    nc = await nats.connect(nats_server.url)
    try:
        for rid in rids:
            entries = [e for m in await messages_on_subject(nc, s.STREAM_INDEX, s.index_subject(rid))
                       if (e := msgspec.json.decode(m.data, type=IndexEntry)).response_id == rid]
            assert len(entries) <= 2, entries
            assert sorted(e.stage for e in entries) == sorted(INDEXING_STAGES)
    finally:
        await nc.close()
    journey = await _trace(nats_server.url, rids[0])
    kinds = {e["kind"] for e in journey["events"]}
    assert kinds >= {"inbound", "alert_captured", "alert_enriched", "delivery_expected", "deliver",
                     "delivery_log", "delivery_attempted", "record"}, kinds
    assert journey["not_found"] == []

"""The operations commands (tail, trace, status) against a real nats-server and the pipeline."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import uuid
from pathlib import Path

import msgspec
import pytest

from alert_timing.nats_server import free_port
from alert_timing.ops import common, trace
from shared import bus
from shared import subjects as s
from tests.harness.frames import ACB_EUI, SUPPLIER, alert_payload, delivery_line, north
from tests.harness.jetstream import collect, decoded, send

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
OPS = [sys.executable, "-m", "alert_timing.cli"]
DSP = {"Dsp-Received-Timestamp": "20230601101502.500"}


def unique(prefix: str = "OPS") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def run_ops(url: str | None, *argv: str, timeout: float = 60.0) -> tuple[int, str, str]:
    env = {**os.environ, "NATS_URL": url} if url else dict(os.environ)
    proc = await asyncio.create_subprocess_exec(*OPS, *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert "Traceback" not in err.decode(), err.decode()
    return proc.returncode, out.decode(), err.decode()


def ctrl_c_reaches_it() -> None:
    """In the child, before it starts: SIGINT as in a terminal. A shell that runs the suite in
    the background (an asynchronous list without job control) ignores SIGINT, and a child
    inherits that, so a Ctrl-C sent to it would change nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def start_tail(url: str, *argv: str) -> asyncio.subprocess.Process:
    """``tail`` as a subprocess, returned once it says it is subscribed."""
    proc = await asyncio.create_subprocess_exec(*OPS, "tail", *argv, "--nats-url", url, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                preexec_fn=ctrl_c_reaches_it)
    assert proc.stderr is not None
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 15)).decode()
        assert line, "tail ended before it was ready"
        if "tailing" in line or "following live" in line:
            return proc


async def read_until(proc: asyncio.subprocess.Process, done, timeout: float = 45.0) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not done(lines):
        line = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - loop.time()))
        assert line, f"tail ended early: {lines}"
        lines.append(line.decode().rstrip("\n"))
    return lines


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
    # Read on to the end, as a terminal does: a command that prints faster than it is read
    # blocks in its write once the pipe is full, and no Ctrl-C is handled until it returns.
    await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode is not None
    return proc.returncode


async def deliveries_for(js, response_id: str, n: int, timeout: float = 45.0) -> list[dict]:
    msgs = await collect(js, s.STREAM_EVENTS, [s.DELIVER],
                         lambda got: sum(1 for d in decoded(got) if d["responseId"] == response_id) >= n, timeout)
    return [d for d in decoded(msgs) if d["responseId"] == response_id]


async def attempts_for(js, response_id: str, timeout: float = 45.0) -> list[dict]:
    def events(got):
        return [e for m in decoded(got) for e in m["events"] if e["response_id"] == response_id]

    msgs = await collect(js, s.STREAM_EVENTS, [f"{s.ATTEMPTED}.*"], lambda got: bool(events(got)), timeout)
    return events(msgs)


# --------------------------------------------------------------------------- pure parts


def test_subject_intersection():
    assert s.intersect("ast.>", "ast.in.>") == "ast.in.>"
    assert s.intersect("ast.*.csp-north", "ast.in.>") == "ast.in.csp-north"
    assert s.intersect("ast.rejected.hub-capture", "ast.rejected.*") == "ast.rejected.hub-capture"
    assert s.intersect("ast.record", "ast.in.>") is None
    assert s.intersect("ast.>", "ast") is None
    assert [name for name, _ in common.stream_filters("ast.>")] == [s.STREAM_IN, s.STREAM_EVENTS, s.STREAM_OUT,
                                                                      s.STREAM_INDEX]
    assert common.stream_filters("ast.deliver") == [(s.STREAM_EVENTS, ["ast.deliver"])]
    assert not common.valid_pattern("ast..x") and not common.valid_pattern("ast.>.x")
    assert common.valid_pattern("ast.*.x")


def test_base64_needles_find_an_id_at_any_alignment():
    rid = b'"OPS-1234"'
    for prefix in (b"", b"a", b"ab", b"abc", b'{"responseId": '):
        encoded = base64.b64encode(prefix + rid + b", oops")
        assert any(n in encoded for n in trace.base64_needles(rid)), prefix


def test_message_lines_one_per_event_with_ids_and_times():
    envelope = msgspec.json.encode({"v": 1, "events": [
        {"type": "delivery_attempted", "delivery_id": "D1", "response_id": "R1", "outcome": "acknowledged",
         "su_passed": 1_685_614_502_700, "su_acknowledged": 1_685_614_503_100},
        {"type": "clock_tick", "time": 1_685_614_502_700},
    ]})
    lines = common.message_lines("ast.attempted.0", envelope)
    assert lines == [
        "ast.attempted.0 delivery_attempted delivery_id=D1 response_id=R1 outcome=acknowledged "
        "su_passed=2023-06-01T10:15:02.700Z su_acknowledged=2023-06-01T10:15:03.100Z",
        "ast.attempted.0 clock_tick time=2023-06-01T10:15:02.700Z",
    ]
    [line] = common.message_lines(s.IN_CSP_NORTH, b'{"responseId": "R1",\n "payload": "' + b"A" * 400 + b'"}')
    assert line.startswith('ast.in.csp-north {"responseId": "R1", "payload": "AAA') and line.endswith("...")
    assert common.message_lines("ast.rejected.hub-capture", b"not json")[0].startswith(
        "ast.rejected.hub-capture (unreadable")
    assert common.json_line(b'{"a":\n 1}') == '{"a":1}'


# --------------------------------------------------------------------------- against the server


async def test_cannot_reach_nats_is_one_line_and_exit_2():
    url = f"nats://127.0.0.1:{free_port()}"
    for command in (["tail"], ["trace", "X"], ["status"]):
        code, out, err = await run_ops(None, *command, "--nats-url", url)
        assert code == 2 and out == ""
        assert err.startswith(f"alert-timing {command[0]}: cannot reach NATS at {url}: "), err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.usefixtures("pipeline")
async def test_trace_prints_the_whole_journey(js, nats_server):
    rid = unique()
    await send(js, s.IN_CSP_NORTH, north(rid, hub="20230601101500.100", timestamp="20230601101502.450"), DSP)
    [delivery] = await deliveries_for(js, rid, 1)
    await send(js, s.IN_DSP_DELIVERY, delivery_line(rid, rid, passed="20230601101502.700",
                                                    acked="20230601101503.100", user=delivery["serviceUserId"]))
    await attempts_for(js, rid)
    await collect(js, s.STREAM_OUT, [s.RECORD],
                  lambda got: any(r["response_id"] == rid for r in decoded(got)), timeout=20)

    code, out, err = await run_ops(nats_server.url, "trace", rid, "--json")  # NATS_URL from the environment
    assert code == 0, err
    journey = json.loads(out)
    kinds = [e["kind"] for e in journey["events"]]
    for kind in ("inbound", "alert_captured", "alert_enriched", "delivery_expected", "deliver",
                 "delivery_log", "delivery_attempted"):
        assert kind in kinds, kinds
    # in the order the stages appended them
    order = [kinds.index(k) for k in ("inbound", "alert_captured", "alert_enriched", "delivery_expected",
                                      "delivery_log", "delivery_attempted")]
    assert order == sorted(order), kinds
    assert all(rid in json.dumps(e["event"]) for e in journey["events"])
    [d] = journey["deliveries"]
    assert d["delivery_id"] == rid and d["category"] == "device_alert" and d["service_user_id"] == SUPPLIER
    assert d["status"] == "complete" and d["deliver_notice"]
    assert d["timing_points"] == {
        "device_alert_time": "2023-06-01T10:14:58.000Z",
        "chf_received": "2023-06-01T10:15:00.100Z",
        "csp_received": "2023-06-01T10:15:02.450Z",  # CSP North: mapped from `timestamp`, offset 0
        "csp_sent": "2023-06-01T10:15:02.450Z",
        "dsp_received": "2023-06-01T10:15:02.500Z",
        "su_passed": "2023-06-01T10:15:02.700Z",
        "su_acknowledged": "2023-06-01T10:15:03.100Z",
    }
    # by hand: 2.450-0.100 s; 2.500-2.450; 2.700-2.500; 3.100-2.700; 3.100-0.100
    assert d["legs_ms"] == {"hub_to_csp": 2350, "csp_to_dsp": 50, "dsp_to_su": 200, "su_handshake": 400,
                            "end_to_end": 3000}
    assert d["attempts"] == [{"outcome": "acknowledged", "su_passed": "2023-06-01T10:15:02.700Z",
                              "su_acknowledged": "2023-06-01T10:15:03.100Z"}]

    code, text, err = await run_ops(nats_server.url, "trace", rid)
    assert code == 0, err
    assert f"alert {rid}:" in text
    for word in ("inbound", "alert_captured", "alert_enriched", "delivery_expected", "deliver ",
                 "delivery_attempted", "hub_to_csp 2350", "end_to_end 3000"):
        assert word in text, word

    if not d["records"]:
        pytest.fail(f"no ast.record for {rid} in the trace")
    [record] = d["records"]
    assert "record" in kinds
    assert record["revision"] == 1 and record["status"] == "complete"
    assert (record["hub_to_csp_ms"], record["csp_to_dsp_ms"], record["dsp_to_su_ms"], record["su_handshake_ms"],
            record["end_to_end_ms"]) == (2350, 50, 200, 400, 3000)
    assert "record rev 1" in text


@pytest.mark.usefixtures("pipeline")
async def test_trace_shows_the_dcc_alerts_an_acb_alert_raised(js, nats_server):
    rid = unique("OPS-ACB")
    await send(js, s.IN_CSP_NORTH, north(rid, payload=alert_payload("8F3F", recipient=ACB_EUI)), DSP)
    await deliveries_for(js, rid, 2)
    code, out, err = await run_ops(None, "trace", rid, "--json", "--nats-url", nats_server.url)
    assert code == 0, err
    journey = json.loads(out)
    assert sorted((a["dcc_alert_code"], a["delivery_id"]) for a in journey["dcc_alerts"]) == [
        ("N39", f"{rid}:N39:1"), ("N54", f"{rid}:N54:2")]
    assert sorted(d["delivery_id"] for d in journey["deliveries"]) == [f"{rid}:N39:1", f"{rid}:N54:2"]
    assert all(d["deliver_notice"] and d["status"] == "awaiting_delivery_log" for d in journey["deliveries"])


@pytest.mark.usefixtures("pipeline")
async def test_trace_finds_the_rejection_of_a_malformed_input(js, nats_server):
    rid = unique("OPS-BAD")
    data = b'{"responseId": "' + rid.encode() + b'", oops'
    await send(js, s.IN_CSP_NORTH, data, DSP)
    await collect(js, s.STREAM_EVENTS, [s.rejected(s.HUB_CAPTURE)],
                  lambda got: any(base64.b64decode(r["raw"]) == data for r in decoded(got)))
    code, out, err = await run_ops(nats_server.url, "trace", rid, "--json")
    assert code == 0, err
    journey = json.loads(out)
    assert [e["kind"] for e in journey["events"]] == ["inbound_unreadable", "rejected_input"]
    assert journey["rejections"][0]["reason"] == "bad_json"


async def test_trace_of_an_unknown_id_exits_1(nats_server, pipeline):
    code, out, err = await run_ops(nats_server.url, "trace", unique("OPS-NOWHERE"))
    assert code == 1 and out == ""
    assert "no event mentions response id" in err and "AST_EVENTS" in err


@pytest.mark.usefixtures("pipeline")
async def test_tail_json_count_prints_messages_published_meanwhile(js, nats_server):
    tail = await start_tail(nats_server.url, s.IN_CSP_NORTH, "--json", "--count", "2")
    sent = [north(unique("OPS-TAIL")), north(unique("OPS-TAIL"), hub=None)]
    for data in sent:
        await send(js, s.IN_CSP_NORTH, data, DSP)
    out, _ = await asyncio.wait_for(tail.communicate(), 15)
    assert tail.returncode == 0
    assert [json.loads(line) for line in out.decode().splitlines()] == [json.loads(d) for d in sent]


@pytest.mark.usefixtures("pipeline")
async def test_tail_readable_lines_follow_an_alert_through_the_stages(js, nats_server):
    rid = unique("OPS-LIVE")
    tail = await start_tail(nats_server.url)
    try:
        await send(js, s.IN_CSP_NORTH, north(rid), DSP)
        lines = await read_until(tail, lambda got: any(f"deliver delivery_id={rid} " in ln for ln in got))
    finally:
        code = await stop(tail)
    assert code == 0  # Ctrl-C is a normal way to stop
    mine = [ln for ln in lines if rid in ln]
    assert any(" ast.in.csp-north " in ln and f'"responseId":"{rid}"' in ln for ln in mine), mine
    assert any(f"ast.captured alert_captured response_id={rid} region=north" in ln
               and "chf_received=2023-06-01T10:15:00.100Z" in ln for ln in mine)
    assert any(f"ast.enriched alert_enriched response_id={rid}" in ln and "alert_code=8F3F" in ln for ln in mine)
    assert any(f"delivery_expected delivery_id={rid} " in ln for ln in mine)


@pytest.mark.usefixtures("pipeline")
async def test_tail_from_start_reads_the_history(js, nats_server):
    rid = unique("OPS-HIST")
    await send(js, s.IN_CSP_NORTH, north(rid), DSP)
    await deliveries_for(js, rid, 1)
    tail = await asyncio.create_subprocess_exec(*OPS, "tail", "ast.>", "--from-start", "--nats-url",
                                                nats_server.url, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, preexec_fn=ctrl_c_reaches_it)
    try:
        lines = await read_until(tail, lambda got: any(f"deliver delivery_id={rid} " in ln for ln in got), 20)
    finally:
        await stop(tail)
    mine = [ln for ln in lines if rid in ln]
    assert " ast.in.csp-north " in mine[0] and "alert_captured" in mine[1]
    assert [ln[:24] for ln in lines] == sorted(ln[:24] for ln in lines)  # stream time order


@pytest.mark.usefixtures("pipeline")
async def test_status_lists_streams_consumers_and_rejections(js, nats_server):
    bad = b'{"responseId": "' + unique("OPS-REJ").encode() + b'", oops'
    await send(js, s.IN_CSP_NORTH, bad, DSP)
    await collect(js, s.STREAM_EVENTS, [s.rejected(s.HUB_CAPTURE)],
                  lambda got: any(base64.b64decode(r["raw"]) == bad for r in decoded(got)))
    code, out, err = await run_ops(nats_server.url, "status", "--json")
    assert code == 0, err
    status = json.loads(out)
    streams = {st["name"]: st for st in status["streams"]}
    assert set(streams) == set(s.STREAM_SUBJECTS)
    assert all(st["exists"] for st in streams.values())
    assert streams[s.STREAM_IN]["messages"] >= 1 and streams[s.STREAM_IN]["last_time"]
    consumers = {(c["stream"], c["durable"]): c for c in status["consumers"]}
    assert set(consumers) == {(spec.stream, spec.durable) for spec in bus.consumer_specs(1)}
    for c in consumers.values():
        assert c["exists"]
        for key in ("num_pending", "num_ack_pending", "num_redelivered", "num_waiting", "ack_floor_stream_seq"):
            assert isinstance(c[key], int), (c["durable"], key)
    assert status["rejected"].get(s.HUB_CAPTURE, 0) >= 1
    assert status["problems"] == []

    code, text, err = await run_ops(nats_server.url, "status")
    assert code == 0, err
    for word in (s.STREAM_IN, s.STREAM_EVENTS, s.STREAM_OUT, "hub-capture", "metrics-0", "rejected by stage:"):
        assert word in text

"""Runs simulated traffic against a NATS server and plays the Service User side."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from dataclasses import dataclass, field

import msgspec
import nats.errors
from nats.js import JetStreamContext, api

from services.simulator.traffic import Traffic, TrafficConfig, generate, service_user_answers
from shared import bus
from shared import subjects as s
from shared.dcc_rules import RuleTable
from shared.events import AstRecord, DeliverNotice, deliver_decoder, record_decoder
from shared.settings import Settings
from shared.timefmt import format_csp

PUBLISH_CHUNK = 1000
DISORDER_MS = 60_000


@dataclass
class RunResult:
    traffic: Traffic
    records: dict[str, AstRecord] = field(default_factory=dict)  # latest revision per delivery
    record_messages: int = 0
    reports: dict[str, int] = field(default_factory=dict)  # window_start -> latest revision
    rejected: int = 0
    answered: int = 0
    publish_seconds: float = 0.0
    first_publish: float = 0.0
    last_record: float = 0.0
    complete: bool = False


def progress(text: str) -> None:
    print(f"\r{text:<78}", end="", file=sys.stderr, flush=True)


async def _tail(js: JetStreamContext, stream: str, subjects: list[str], start_seq: int):
    """An ephemeral pull consumer from a sequence: the reliable way to follow a stream."""
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(start_seq, 1),
        filter_subjects=subjects,
        inactive_threshold=60.0,
        mem_storage=True,
    )
    return await js.pull_subscribe("", stream=stream, config=config)


async def _fetch(sub, n: int = 1000, timeout: float = 0.5) -> list:
    try:
        return await sub.fetch(n, timeout=timeout)
    except (TimeoutError, nats.errors.TimeoutError):
        return []


async def publish_inputs(js: JetStreamContext, traffic: Traffic, rate: float | None, timeout: float,
                         show: bool) -> None:
    started = time.perf_counter()
    total = len(traffic.inputs)
    for i in range(0, total, PUBLISH_CHUNK):
        chunk = traffic.inputs[i : i + PUBLISH_CHUNK]
        await bus.publish_all(js, [
            bus.Outgoing(m.subject, m.data, f"in:{m.response_id}:{m.kind}:{i + k}" if m.kind != "duplicate"
                         else f"dup:{m.response_id}:{i + k}", m.headers)
            for k, m in enumerate(chunk)
        ], timeout)
        done = i + len(chunk)
        if rate:
            ahead = done / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        if show:
            progress(f"published {done}/{total} inputs")


async def service_user_side(js: JetStreamContext, traffic: Traffic, seed: int, start_seq: int,
                            result: RunResult, timeout: float, stop: asyncio.Event) -> None:
    """Answers each `ast.deliver` of this run as the Service Users would, into the DSP log."""
    sub = await _tail(js, s.STREAM_EVENTS, [s.DELIVER], start_seq)
    rng = random.Random(seed)
    seen: set[str] = set()
    try:
        while not stop.is_set():
            msgs = await _fetch(sub)
            lines = []
            for m in msgs:
                notice: DeliverNotice = deliver_decoder.decode(m.data)
                received = traffic.dsp_received.get(notice.response_id)
                if received is None or notice.delivery_id in seen:
                    continue
                seen.add(notice.delivery_id)
                lines.extend(service_user_answers(notice.delivery_id, notice.response_id, notice.dcc_alert_code,
                                                  notice.service_user_id, received, seed))
            # The log does not arrive in order, but not wildly out of it either: lines are
            # shuffled within about a minute of their event time (DISORDER_MS).
            lines.sort(key=lambda ln: ln.su_passed + rng.randrange(DISORDER_MS))
            await bus.publish_all(js, [bus.Outgoing(s.IN_DSP_DELIVERY, ln.data, ln.msg_id) for ln in lines], timeout)
            result.answered = len(seen)
    finally:
        await sub.unsubscribe()


async def run_traffic(settings: Settings, config: TrafficConfig, *, rate: float | None = None,
                      wait_s: float = 120.0, show: bool = True, close_windows: bool = True) -> RunResult:
    rules = RuleTable.load(settings.dcc_rules)
    traffic = generate(config, rules)
    result = RunResult(traffic)
    expected = traffic.expected_deliveries
    nc = await bus.connect(settings, "simulator")
    js = nc.jetstream(timeout=settings.publish_ack_timeout_s)
    try:
        deliver_from = (await js.stream_info(s.STREAM_EVENTS)).state.last_seq + 1
        out_from = (await js.stream_info(s.STREAM_OUT)).state.last_seq + 1
        stop = asyncio.Event()
        su = asyncio.create_task(service_user_side(js, traffic, config.seed, deliver_from, result,
                                                   settings.publish_ack_timeout_s, stop))
        records = await _tail(js, s.STREAM_OUT, [s.RECORD, s.REPORT_15M], out_from)
        rejected = await _tail(js, s.STREAM_EVENTS, [f"{s.REJECTED}.*"], deliver_from)

        result.first_publish = time.perf_counter()
        await publish_inputs(js, traffic, rate, settings.publish_ack_timeout_s, show)
        result.publish_seconds = time.perf_counter() - result.first_publish

        deadline = time.monotonic() + wait_s
        clock_sent = False
        while time.monotonic() < deadline:
            for m in await _fetch(records, 2000, 0.2):
                if m.subject == s.RECORD:
                    record = record_decoder.decode(m.data)
                    result.record_messages += 1
                    old = result.records.get(record.delivery_id)
                    if old is None or record.revision > old.revision:
                        result.records[record.delivery_id] = record
                    result.last_record = time.perf_counter()
                else:
                    report = msgspec.json.decode(m.data)
                    result.reports[report["window_start"]] = max(
                        report["revision"], result.reports.get(report["window_start"], 0))
            result.rejected += len(await _fetch(rejected, 1000, 0.01))
            if show:
                progress(f"deliveries answered {result.answered}/{len(expected)}, "
                         f"records {len(result.records)}, reports {len(result.reports)}")
            if close_windows and not clock_sent and result.answered >= len(expected):
                # The DSP gateway's clock moves on past the last window, its lateness and
                # the handshake timeout, so every window closes by event time.
                end = traffic.last_event_ms + int((settings.allowed_lateness_s + settings.handshake_timeout_s) * 1000) + 2 * 900_000
                await js.publish(s.IN_DSP_CLOCK, msgspec.json.encode({"time": format_csp(end)}),
                                 headers={"Nats-Msg-Id": f"clock:{config.seed}:{end}"})
                clock_sent = True
            if expected.issubset(result.records) and (not close_windows or _all_windows(result, traffic)):
                result.complete = True
                break
        stop.set()
        await su
        await records.unsubscribe()
        await rejected.unsubscribe()
    finally:
        await nc.close()
    if show:
        print(file=sys.stderr)
    return result


def _all_windows(result: RunResult, traffic: Traffic) -> bool:
    if not traffic.dsp_received:
        return True
    first = min(traffic.dsp_received.values()) // 900_000
    last = max(traffic.dsp_received.values()) // 900_000
    return len(result.reports) >= last - first + 1

"""Runs simulated traffic against a NATS server and plays the Service User side."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from alert_timing.simulator.traffic import Traffic, TrafficConfig, generate, prepare, service_user_answers
from services.runtime.envelopes import decode_events
from shared import bus
from shared import subjects as s
from shared.csp_notifications import load as load_notifications
from shared.dcc_rules import RuleTable
from shared.events import AnyEvent, AstRecord, DeliverNotice, deliver_decoder, record_decoder
from shared.settings import Settings
from shared.timefmt import format_csp, format_iso

PUBLISH_CHUNK = 1000
DISORDER_MS = 60_000


@dataclass
class RunResult:
    traffic: Traffic
    records: dict[str, AstRecord] = field(default_factory=dict)  # latest revision per delivery
    record_messages: int = 0
    reports: dict[str, int] = field(default_factory=dict)  # window_start -> latest revision (any partition)
    #: (metrics partition, window_start) -> latest revision: each partition reports every window
    partition_reports: dict[tuple[int, str], int] = field(default_factory=dict)
    rejected: int = 0
    answered: int = 0
    publish_seconds: float = 0.0
    first_publish: float = 0.0
    last_record: float = 0.0
    complete: bool = False
    #: When not complete: what is missing, one line each (records, windows, stages behind, logs)
    missing: list[str] = field(default_factory=list)
    #: When not complete: why the wait ended, one line
    stopped: str = ""


def progress(text: str) -> None:
    print(f"\r{text:<78}", end="", file=sys.stderr, flush=True)


#: Seconds between two looks at the services' consumers (pending per stage) while waiting.
PENDING_POLL_S = 2.0
#: A run stops as unable to complete when nothing has moved and every stage has been idle
#: (nothing pending) this long beyond the wall-clock window close (``idle_close_after_s``).
STALL_MARGIN_S = 15.0

#: Seconds a follower goes without a message before it checks that its consumer still exists.
FOLLOWER_CHECK_S = 3.0
#: How long a publish is retried while the broker is away (restart, cluster fail-over).
PUBLISH_RETRY_S = 120.0


class _Follower:
    """Follows a stream from a sequence through an ephemeral pull consumer, and opens a new
    one from the next sequence when it is gone. An ephemeral (memory) consumer does not
    survive a restart of its server, or the loss of the cluster node holding it: without this
    the simulator stopped seeing records and deliveries after a broker restart."""

    def __init__(self, js: JetStreamContext, stream: str, subjects: list[str], start_seq: int,
                 prefix: bytes = b"_INBOX.") -> None:
        self.js, self.stream, self.subjects = js, stream, subjects
        self.prefix = prefix  # the connection's own inbox (bus.reply_prefix): the only one it may read
        self.next_seq = max(start_seq, 1)
        self.sub: JetStreamContext.PullSubscription | None = None
        self.quiet_since = time.monotonic()

    async def open(self) -> _Follower:
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.next_seq,
            filter_subjects=self.subjects,
            inactive_threshold=60.0,
            mem_storage=True,
        )
        self.sub = await self.js.pull_subscribe("", stream=self.stream, config=config,
                                                inbox_prefix=self.prefix)
        self.quiet_since = time.monotonic()
        return self

    async def _reopen(self) -> None:
        old, self.sub = self.sub, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.unsubscribe()
        try:
            await self.open()
        except Exception:  # noqa: BLE001 - the broker is still away: the next fetch tries again
            await asyncio.sleep(0.5)

    async def fetch(self, n: int, timeout: float) -> list[Msg]:
        if self.sub is None:
            await self._reopen()
            if self.sub is None:
                return []
        try:
            msgs = await self.sub.fetch(n, timeout=timeout)
        except (TimeoutError, nats.errors.TimeoutError):
            bus.raise_if_cancelled()
            if time.monotonic() - self.quiet_since >= FOLLOWER_CHECK_S:
                self.quiet_since = time.monotonic()
                try:
                    await self.sub.consumer_info()
                except Exception:  # noqa: BLE001 - gone (or unreachable): open a new one
                    await self._reopen()
            return []
        except Exception:  # noqa: BLE001 - consumer gone, connection lost or reconnecting
            bus.raise_if_cancelled()
            await self._reopen()
            return []
        if msgs:
            self.next_seq = msgs[-1].metadata.sequence.stream + 1
            self.quiet_since = time.monotonic()
        return msgs

    async def unsubscribe(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
            self.sub = None


async def _tail(js: JetStreamContext, stream: str, subjects: list[str], start_seq: int,
                prefix: bytes = b"_INBOX.") -> _Follower:
    """Follow a stream from a sequence (an ephemeral pull consumer, reopened when lost)."""
    return await _Follower(js, stream, subjects, start_seq, prefix).open()


async def publish_retrying(js: JetStreamContext, messages: list[bus.Outgoing], timeout: float,
                           give_up_s: float = PUBLISH_RETRY_S) -> None:
    """``bus.publish_all``, again and again while the broker is away (every message carries
    its ``Nats-Msg-Id``, so the copies already stored are dropped). Before, one publish not
    acknowledged in time ended the whole run."""
    deadline = time.monotonic() + give_up_s
    delay = 0.25
    while True:
        try:
            await bus.publish_all(js, messages, timeout)
            return
        except (bus.PublishError, nats.errors.Error, ConnectionError):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _fetch(sub: _Follower, n: int = 1000, timeout: float = 0.5) -> list[Msg]:
    try:
        return await sub.fetch(n, timeout=timeout)
    except (TimeoutError, nats.errors.TimeoutError):
        return []


async def publish_inputs(js: JetStreamContext, traffic: Traffic, rate: float | None, timeout: float,
                         show: bool, seed: int = 0) -> None:
    """Each input its own message with its headers, acked by JetStream (the acks of a chunk
    awaited together). The messages are built beforehand (``prepare``): here they are sent."""
    outgoing = prepare(traffic, seed).outgoing
    started = time.perf_counter()
    total = len(outgoing)
    # At a given rate, about ten chunks a second (a steady flow, not a burst every few seconds).
    step = PUBLISH_CHUNK if not rate else max(1, min(PUBLISH_CHUNK, int(rate / 10)))
    for i in range(0, total, step):
        chunk = outgoing[i : i + step]
        await publish_prepared_retrying(js, chunk, timeout)
        done = i + len(chunk)
        if rate:
            ahead = done / rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        if show:
            progress(f"published {done}/{total} inputs")


async def publish_prepared(js: JetStreamContext, messages: list[tuple[str, bytes, dict[str, str]]],
                           timeout: float) -> None:
    """``bus.publish_all`` for messages whose headers are built already (``Nats-Msg-Id`` among
    them): each its own message, the acks of all awaited together."""
    futures: list[asyncio.Future] = []
    try:
        for subject, payload, headers in messages:
            futures.append(await js.publish_async(subject, payload, headers=headers))
        await asyncio.wait_for(asyncio.gather(*futures), timeout)
    except TimeoutError as exc:
        raise bus.PublishError(f"{len(messages)} publishes not acknowledged within {timeout}s") from exc
    except Exception as exc:  # an API error from the stream (e.g. no stream, too large), a lost connection
        raise bus.PublishError(f"publish failed: {exc}") from exc
    finally:
        for f in futures:  # as bus.publish_all: a future left waiting holds a pending-publish slot
            if not f.done():
                f.cancel()


async def publish_prepared_retrying(js: JetStreamContext, messages: list[tuple[str, bytes, dict[str, str]]],
                                    timeout: float, give_up_s: float = PUBLISH_RETRY_S) -> None:
    """``publish_prepared``, retried while the broker is away, as ``publish_retrying``."""
    deadline = time.monotonic() + give_up_s
    delay = 0.25
    while True:
        try:
            await publish_prepared(js, messages, timeout)
            return
        except (bus.PublishError, nats.errors.Error, ConnectionError):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def service_user_side(js: JetStreamContext, traffic: Traffic, seed: int, start_seq: int,
                            result: RunResult, timeout: float, stop: asyncio.Event,
                            prefix: bytes = b"_INBOX.") -> None:
    """Answers each `ast.deliver` of this run as the Service Users would, into the DSP log."""
    sub = await _tail(js, s.STREAM_EVENTS, [s.DELIVER], start_seq, prefix)
    rng = random.Random(seed)
    seen: set[str] = set()
    answers = prepare(traffic, seed).answers
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
                ready = answers.get((notice.delivery_id, notice.response_id, notice.dcc_alert_code,
                                     notice.service_user_id))
                # A notice routed otherwise than the traffic expected is answered all the same.
                lines.extend(ready if ready is not None else service_user_answers(
                    notice.delivery_id, notice.response_id, notice.dcc_alert_code, notice.service_user_id,
                    received, seed, throttled=notice.delivery_id in traffic.throttled,
                    throttled_count=traffic.throttled_counts.get(notice.delivery_id),
                    always_acknowledge=traffic.always_acknowledge,
                    late_ms=traffic.ack_late_ms(notice.service_user_id, notice.delivery_id)))
            # The log does not arrive in order, but not wildly out of it either: lines are
            # shuffled within about a minute of their event time (DISORDER_MS).
            lines.sort(key=lambda ln: ln.su_passed + rng.randrange(DISORDER_MS))
            await publish_retrying(js, [bus.Outgoing(s.IN_DSP_DELIVERY, ln.data, ln.msg_id) for ln in lines], timeout)
            result.answered = len(seen)
    finally:
        await sub.unsubscribe()


async def stage_pending(js: JetStreamContext, partitions: int) -> dict[str, tuple[int, int]] | None:
    """Each service consumer's (pending, ack pending); None when they cannot be read now
    (the broker away, a consumer missing)."""
    out: dict[str, tuple[int, int]] = {}
    for spec in bus.consumer_specs(partitions):
        try:
            info = await js.consumer_info(spec.stream, spec.durable, timeout=2.0)
        except Exception:  # noqa: BLE001 - unknown now; the next look tries again
            return None
        out[spec.durable] = (info.num_pending or 0, info.num_ack_pending or 0)
    return out


def behind(pending: dict[str, tuple[int, int]] | None) -> str:
    """The stage furthest behind, for the progress line."""
    if pending is None:
        return "stages: not readable"
    name, (waiting, unacked) = max(pending.items(), key=lambda kv: sum(kv[1]))
    if waiting + unacked == 0:
        return "every stage idle"
    return f"behind: {name} {waiting + unacked:,} pending"


def what_is_missing(result: RunResult, due: dict[int, set[str]], pending: dict[str, tuple[int, int]] | None,
                    logs: Path | None) -> list[str]:
    """A run that did not complete, in lines a newcomer can act on."""
    expected = result.traffic.expected_deliveries
    lines = []
    missing = sorted(expected - result.records.keys())
    if missing:
        lines.append(f"records missing: {len(missing):,} of {len(expected):,} (e.g. {', '.join(missing[:3])})")
    if result.answered < len(expected):
        lines.append(f"deliveries never offered to the Service Users: {len(expected) - result.answered:,} of "
                     f"{len(expected):,} (dsp-mapping did not send them on ast.deliver)")
    windows = [(p, w) for p, ws in sorted(due.items()) for w in sorted(ws) if (p, w) not in result.partition_reports]
    if windows:
        lines.append(f"15-minute reports missing: {len(windows):,} of {sum(len(w) for w in due.values()):,} "
                     f"(e.g. partition {windows[0][0]} window {windows[0][1]})")
    if pending is None:
        lines.append("stages: their consumers could not be read")
    else:
        lines.append("stages (pending / ack pending): "
                     + ", ".join(f"{name} {waiting:,}/{unacked:,}" for name, (waiting, unacked) in pending.items()))
    lines.append(f"logs: {logs}" if logs else "logs: see the services' own logs")
    return lines


async def metrics_latest_inputs(js: JetStreamContext, partitions: int) -> list[tuple[list[AnyEvent], int]]:
    """The events of the last message on each of the metrics service's input subjects, with
    the wall time (epoch ms) JetStream stored it (see ``sit.pipeline_event_time``)."""
    subjects = sorted({f for spec in bus.consumer_specs(partitions) if spec.service == s.METRICS
                       for f in spec.filter_subjects})
    latest = []
    for subject in subjects:
        try:
            m = await js.get_last_msg(s.STREAM_EVENTS, subject)
        except nats.js.errors.NotFoundError:
            continue
        if m.subject is None or m.data is None or m.time is None:
            continue
        try:
            events = decode_events(m.subject, m.data)
        except msgspec.DecodeError:  # not an event the metrics service reads either
            continue
        latest.append((events, int(m.time.timestamp() * 1000)))
    return latest


async def run_traffic(settings: Settings, config: TrafficConfig, *, rate: float | None = None,
                      wait_s: float = 120.0, show: bool = True, close_windows: bool = True,
                      logs: Path | None = None, alive: Callable[[], list[str]] | None = None,
                      traffic: Traffic | None = None) -> RunResult:
    """Publish ``traffic`` (default: generated from ``config``), answer its deliveries as the
    Service Users, and wait for every record it should give (and window report).
    The wait ends early, not complete, when the run cannot complete any more: every stage idle
    and nothing moving, or (``alive`` names them) services died. ``result.missing`` and
    ``result.stopped`` then say what is missing and why it stopped; ``logs`` is where to look."""
    from alert_timing.ops.common import connect

    if traffic is None:
        traffic = generate(config, RuleTable.load(settings.dcc_rules), load_notifications(settings.csp_notifications))
    prepare(traffic, config.seed)  # a no-op when the caller prepared it before its timed window
    result = RunResult(traffic)
    expected = traffic.expected_deliveries
    # Fails fast (one line) when NATS cannot be reached; once connected, rides out restarts.
    nc = await connect(settings, "simulate", reconnect_attempts=-1)
    js = nc.jetstream(timeout=settings.publish_ack_timeout_s)
    try:
        deliver_from = (await js.stream_info(s.STREAM_EVENTS)).state.last_seq + 1
        out_from = (await js.stream_info(s.STREAM_OUT)).state.last_seq + 1
        stop = asyncio.Event()
        prefix = bus.reply_prefix(nc)
        su = asyncio.create_task(service_user_side(js, traffic, config.seed, deliver_from, result,
                                                   settings.publish_ack_timeout_s, stop, prefix))
        records = await _tail(js, s.STREAM_OUT, [s.RECORD, s.REPORT_15M], out_from, prefix)
        rejected = await _tail(js, s.STREAM_EVENTS, [f"{s.REJECTED}.*"], deliver_from, prefix)

        due = windows_due(traffic, settings.metrics_partitions)
        result.first_publish = time.perf_counter()
        await publish_inputs(js, traffic, rate, settings.publish_ack_timeout_s, show, config.seed)
        result.publish_seconds = time.perf_counter() - result.first_publish

        deadline = time.monotonic() + wait_s
        clock_sent = False
        stall_s = settings.idle_close_after_s + STALL_MARGIN_S
        pending: dict[str, tuple[int, int]] | None = None
        looked = moved = time.monotonic()
        seen: tuple[int, ...] = ()
        while True:
            now = time.monotonic()
            if now >= deadline:
                result.stopped = f"stopped: not every alert came out within --wait {wait_s:g} s"
                break
            dead = alive() if alive else []
            if dead:
                result.stopped = f"stopped: services died: {', '.join(dead)}"
                break
            if now - looked >= PENDING_POLL_S:
                looked = now
                pending = await stage_pending(js, settings.metrics_partitions)
                if pending is None or any(sum(v) for v in pending.values()):
                    moved = now  # a stage is working (or cannot be seen): not stalled
            state = (result.answered, len(result.records), result.record_messages, len(result.partition_reports),
                     result.rejected)
            if state != seen:
                seen, moved = state, now
            if now - moved >= stall_s:
                result.stopped = (f"stopped: this run cannot complete: nothing moved for {now - moved:.0f} s with "
                                  f"every stage idle (most often an earlier run of the same --seed on this store "
                                  f"recorded these alerts already: start from a clean store, `up --fresh`, or "
                                  f"give another --seed)")
                break
            if su.done():
                su.result()  # the Service User side failed: say why now, not at the deadline
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
                    window, revision = report["window_start"], report["revision"]
                    result.reports[window] = max(revision, result.reports.get(window, 0))
                    key = (report_partition(m.headers), window)
                    result.partition_reports[key] = max(revision, result.partition_reports.get(key, 0))
            result.rejected += len(await _fetch(rejected, 1000, 0.01))
            if show:
                progress(f"deliveries answered {result.answered}/{len(expected)}, "
                         f"records {len(result.records)}/{len(expected)}, reports {len(result.reports)}"
                         + (f"; {behind(pending)}" if pending is not None else ""))
            if close_windows and not clock_sent and result.answered >= len(expected):
                # The DSP gateway's clock moves on past the last window, its lateness and
                # the handshake timeout, so every window closes by event time.
                end = (traffic.last_event_ms
                       + int((settings.allowed_lateness_s + settings.handshake_timeout_s) * 1000) + 2 * 900_000)
                tick = bus.Outgoing(s.IN_DSP_CLOCK, msgspec.json.encode({"time": format_csp(end)}),
                                    f"clock:{config.seed}:{end}")
                await publish_retrying(js, [tick], settings.publish_ack_timeout_s)
                clock_sent = True
            if expected.issubset(result.records) and (not close_windows or _all_windows(result, due)):
                result.complete = True
                break
        if not result.complete:
            pending = await stage_pending(js, settings.metrics_partitions)
            result.missing = what_is_missing(result, due if close_windows else {}, pending, logs)
        stop.set()
        await su
        await records.unsubscribe()
        await rejected.unsubscribe()
    finally:
        await nc.close()
    if show:
        print(file=sys.stderr)
    return result


def report_partition(headers: dict[str, str] | None) -> int:
    """The metrics partition of an ``ast.report.15m`` message, from its ``Nats-Msg-Id``
    (``report:<partition>:<window_start>:<revision>``)."""
    parts = ((headers or {}).get("Nats-Msg-Id") or "").split(":", 2)
    if len(parts) == 3 and parts[0] == "report" and parts[1].isdigit():
        return int(parts[1])
    return 0


def windows_due(traffic: Traffic, partitions: int = 1) -> dict[int, set[str]]:
    """The windows (``window_start``) each metrics partition must report for this traffic:
    every window from the first to the last of its deliveries' DSP receipts (partition 0 also
    counts the service responses), empty ones between included."""
    bounds: dict[int, list[int]] = {}

    def note(p: int, ms: int) -> None:
        w = ms // 900_000
        held = bounds.get(p)
        if held is None:
            bounds[p] = [w, w]
        else:
            held[0], held[1] = min(held[0], w), max(held[1], w)

    for i in traffic.inputs:
        if i.kind in ("alert", "outage"):
            for d in i.deliveries:
                note(s.partition_of(d, partitions), i.dsp_received)
        elif i.kind == "service_response":
            note(0, i.dsp_received)
    return {p: {format_iso(w * 900_000) for w in range(lo, hi + 1)} for p, (lo, hi) in bounds.items()}


def _all_windows(result: RunResult, due: dict[int, set[str]]) -> bool:
    return all((p, w) in result.partition_reports for p, windows in due.items() for w in windows)

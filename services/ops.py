"""Operations commands: ``tail``, ``trace``, ``status`` and ``docs``.

- ``tail`` follows live traffic with a core NATS subscription (works for a read-only user),
  or with ``--from-start`` reads the JetStream history first and then keeps following.
- ``trace`` reads the event log (AST_IN, AST_EVENTS, AST_OUT) and prints one alert's journey.
- ``status`` shows the streams, every service's durable consumer and the rejection counts.
- ``docs`` writes the AsyncAPI 3.0 document of every subject (``docs/asyncapi.json``).

Every command reads ``NATS_URL`` (and the other ``NATS_*`` settings) unless ``--nats-url``
is given, and reports problems as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import heapq
import inspect
import json
import secrets
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from shared import subjects as s
from shared.timefmt import format_iso

PROG = "alert-timing"
DEFAULT_DOCS_PATH = Path("docs") / "asyncapi.json"
LEG_NAMES = ("hub_to_csp", "csp_to_dsp", "dsp_to_su", "su_handshake", "end_to_end")
EVENT_TIME_FIELDS = ("device_alert_time", "chf_received", "csp_received", "csp_sent", "dsp_received",
                     "su_passed", "su_acknowledged", "time")

_json = msgspec.json.Decoder()


class OpsError(Exception):
    """A problem to tell the user in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class _Done(Exception):
    """``--count`` lines written."""


#: The last error the server reported asynchronously (e.g. a permissions violation).
_ASYNC_ERRORS: list[BaseException] = []


# --------------------------------------------------------------------------- plumbing


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from shared import settings as settings_mod

    return settings_mod.load(nats_url=getattr(args, "nats_url", None))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


async def _connect(settings, command: str, *, follow: bool = False):  # type: ignore[no-untyped-def]
    """Connect, failing fast with the real cause when the server cannot be reached."""
    import nats.errors

    from shared import bus

    errors: list[BaseException] = []
    notices: dict[str, bool] = {"connected": False}
    holder: dict[str, Any] = {}
    _ASYNC_ERRORS.clear()

    async def on_error(exc: Exception) -> None:
        errors.append(exc)
        del errors[:-5]
        _ASYNC_ERRORS[:] = [exc]
        if notices["connected"] and isinstance(exc, nats.errors.SlowConsumerError):
            _note(f"{PROG} {command}: output too slow, messages dropped")

    async def on_disconnect() -> None:
        client = holder.get("nc")
        if follow and client is not None and not (client.is_closed or client.is_draining):
            _note(f"{PROG} {command}: disconnected from NATS, reconnecting...")

    async def on_reconnect() -> None:
        if follow:
            _note(f"{PROG} {command}: reconnected")

    try:
        nc = await bus.connect(settings, f"{PROG}-{command}", max_reconnect_attempts=1, connect_timeout=3,
                               error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect)
    except Exception as exc:  # NoServersError, OSError, TimeoutError, auth errors
        cause = errors[-1] if errors else exc
        raise OpsError(f"cannot reach NATS at {settings.nats_url}: {_describe(cause)}") from None
    # Once connected, ride out broker restarts (a live tail) or short blips (a scan).
    nc.options["max_reconnect_attempts"] = -1 if follow else 10
    notices["connected"] = True
    holder["nc"] = nc
    return nc


async def _close(nc) -> None:  # type: ignore[no-untyped-def]
    try:
        await asyncio.wait_for(nc.close(), 5)
    except Exception:  # noqa: BLE001 - closing is best effort
        pass


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _command(name: str, body: Callable[[argparse.Namespace], Any], interrupted: int = 130):
    """Run an async command body: one-line errors, exit status, Ctrl-C and closed pipes."""

    def invoke(args: argparse.Namespace) -> int:
        try:
            return int(asyncio.run(body(args)) or 0)
        except BaseExceptionGroup as group:  # from a task group: report the first real cause
            leaf: BaseException = group
            while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
                leaf = leaf.exceptions[0]
            raise leaf from None

    def run(args: argparse.Namespace) -> int:
        import nats.errors
        import nats.js.errors

        try:
            return invoke(args)
        except OpsError as exc:
            _note(f"{PROG} {name}: {exc}")
            return exc.code
        except KeyboardInterrupt:
            return interrupted
        except BrokenPipeError:
            _quiet_stdout()
            return 0
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
            _note(f"{PROG} {name}: JetStream is not available on this server (not enabled, or this user "
                  f"may not use its API){_server_said()}")
            return 2
        except nats.js.errors.APIError as exc:
            _note(f"{PROG} {name}: JetStream refused the request: {exc.description or _describe(exc)}")
            return 2
        except (nats.errors.TimeoutError, TimeoutError):
            _note(f"{PROG} {name}: NATS did not answer in time{_server_said()}")
            return 2
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            _note(f"{PROG} {name}: NATS request failed: {_describe(exc)}{_server_said()}")
            return 2
        except Exception as exc:  # noqa: BLE001 - the promise is one line, not a traceback
            _note(f"{PROG} {name}: unexpected error: {type(exc).__name__}: {_describe(exc)}")
            return 2

    return run


def _server_said() -> str:
    return f" (server said: {_describe(_ASYNC_ERRORS[-1])})" if _ASYNC_ERRORS else ""


def _quiet_stdout() -> None:
    """After a closed pipe (``| head``), stop Python complaining when it flushes stdout."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _ms_of(msg) -> int:  # type: ignore[no-untyped-def]
    return int(msg.metadata.timestamp.timestamp() * 1000)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: object) -> str:
    if isinstance(ms, bool) or not isinstance(ms, int):
        return "-" if ms is None else str(ms)
    return format_iso(ms) or "-"


def shorten(data: bytes | str, limit: int = 200) -> str:
    """One line of at most ``limit`` characters: whitespace collapsed, the rest cut with ``...``."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- subjects


def valid_pattern(pattern: str) -> bool:
    tokens = pattern.split(".")
    if not pattern or any(c.isspace() for c in pattern):
        return False
    for i, token in enumerate(tokens):
        if not token:
            return False
        if token == ">" and i != len(tokens) - 1:
            return False
        if (">" in token or "*" in token) and token not in (">", "*"):
            return False
    return True


def intersect(a: str, b: str) -> str | None:
    """The subjects two patterns both match, as one pattern (None when they share none)."""
    ta, tb = a.split("."), b.split(".")
    out: list[str] = []
    i = 0
    while True:
        if i == len(ta) and i == len(tb):
            return ".".join(out)
        if i < len(ta) and ta[i] == ">":
            return ".".join(out + tb[i:]) if i < len(tb) else None
        if i < len(tb) and tb[i] == ">":
            return ".".join(out + ta[i:])
        if i >= len(ta) or i >= len(tb):
            return None
        x, y = ta[i], tb[i]
        if x == "*":
            out.append(y)
        elif y == "*" or x == y:
            out.append(x)
        else:
            return None
        i += 1


def stream_filters(pattern: str) -> list[tuple[str, list[str]]]:
    """Each stream holding subjects that ``pattern`` matches, with the filters to read them."""
    plan = []
    for stream, subjects in s.STREAM_SUBJECTS.items():
        filters = sorted({f for subj in subjects if (f := intersect(pattern, subj)) is not None})
        if filters:
            plan.append((stream, filters))
    return plan


# --------------------------------------------------------------------------- formatting


def _kv(pairs: Iterable[tuple[str, object]]) -> str:
    parts = []
    for key, value in pairs:
        if isinstance(value, (list, tuple)):
            if not value:
                continue
            value = ",".join(str(v) for v in value)
        elif value is None:
            value = "-"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def _times(event: dict, names: Sequence[str]) -> list[tuple[str, object]]:
    return [(n, _iso(event.get(n))) for n in names]


def event_summary(event: dict) -> str:
    """One event of an envelope in one line: type, ids and key times."""
    kind = event.get("type", "?")
    g = event.get
    if kind == "alert_captured":
        body = [("response_id", g("response_id")), ("region", g("region")), ("hub", g("comms_hub_id"))]
        body += _times(event, ("chf_received", "csp_received", "csp_sent", "dsp_received"))
        body += [("dsp_source", g("dsp_received_source"))]
    elif kind == "alert_enriched":
        body = [("response_id", g("response_id")), ("region", g("region")), ("alert_code", g("alert_code")),
                ("message_code", g("message_code")), ("recipient", g("recipient"))]
        body += _times(event, ("device_alert_time", "chf_received", "csp_received", "csp_sent", "dsp_received"))
        body += [("flags", g("flags"))]
    elif kind == "service_response_seen":
        body = [("response_id", g("response_id")), ("region", g("region")), ("cra_flag", g("cra_flag")),
                ("message_code", g("message_code"))] + _times(event, ("dsp_received",))
    elif kind == "delivery_expected":
        body = [("delivery_id", g("delivery_id")), ("response_id", g("response_id")),
                ("category", g("category")), ("alert_code", g("alert_code")),
                ("dcc_alert_code", g("dcc_alert_code")), ("service_user", g("service_user_id"))]
        body += _times(event, ("chf_received", "csp_sent", "dsp_received"))
    elif kind == "delivery_attempted":
        body = [("delivery_id", g("delivery_id")), ("response_id", g("response_id")), ("outcome", g("outcome"))]
        body += _times(event, ("su_passed", "su_acknowledged"))
    elif kind == "clock_tick":
        body = _times(event, ("time",))
    elif kind == "rejected_input":
        return rejection_summary(event)
    else:
        return f"{kind} {shorten(msgspec.json.encode(event), 160)}"
    return f"{kind} {_kv(body)}"


def rejection_summary(event: dict) -> str:
    body = [("stage", event.get("stage")), ("reason", event.get("reason")),
            ("subject", event.get("subject")), ("source_seq", event.get("source_seq"))]
    return f"rejected_input {_kv(body)} message={shorten(str(event.get('message', '')), 160)!r}"


def record_summary(record: dict) -> str:
    body: list[tuple[str, object]] = [
        ("delivery_id", record.get("delivery_id")), ("response_id", record.get("response_id")),
        ("rev", record.get("revision")), ("status", record.get("status")),
        ("dcc_alert_code", record.get("dcc_alert_code")),
    ]
    body += [(leg, record.get(f"{leg}_ms")) for leg in LEG_NAMES]
    body += [("attempts", record.get("delivery_attempts")), ("flags", record.get("flags"))]
    return f"record {_kv(body)}"


def deliver_summary(notice: dict) -> str:
    return "deliver " + _kv([("delivery_id", notice.get("deliveryId")), ("response_id", notice.get("responseId")),
                             ("dcc_alert_code", notice.get("dccAlertCode")),
                             ("service_user", notice.get("serviceUserId"))])


def report_summary(report: dict) -> str:
    rows = report.get("rows") or []
    total = next((r for r in rows if isinstance(r, dict) and r.get("region") == "all"
                  and r.get("category") == "all"), None)
    body: list[tuple[str, object]] = [("window", f"{report.get('window_start')}..{report.get('window_end')}"),
                                      ("rev", report.get("revision"))]
    if total:
        body += [("alerts", total.get("alerts")), ("complete", total.get("complete")),
                 ("rejected", total.get("rejected"))]
    return f"report {_kv(body)}"


def message_lines(subject: str, data: bytes) -> list[str]:
    """A message as readable lines (one per event inside an envelope), without the time."""
    if subject.startswith("ast.in."):
        return [f"{subject} {shorten(data)}"]
    try:
        obj = _json.decode(data)
    except msgspec.DecodeError:
        return [f"{subject} (unreadable, {len(data)} bytes) {shorten(data, 120)}"]
    if not isinstance(obj, dict):
        return [f"{subject} {shorten(data)}"]
    if subject.startswith((s.REJECTED + ".", s.DEAD_LETTER + ".")):
        return [f"{subject} {rejection_summary(obj)}"]
    if subject == s.DELIVER:
        return [f"{subject} {deliver_summary(obj)}"]
    if subject == s.RECORD:
        return [f"{subject} {record_summary(obj)}"]
    if subject == s.REPORT_15M:
        return [f"{subject} {report_summary(obj)}"]
    events = obj.get("events")
    if isinstance(events, list):
        return [f"{subject} {event_summary(e) if isinstance(e, dict) else shorten(str(e))}" for e in events] \
            or [f"{subject} (empty envelope)"]
    return [f"{subject} {shorten(data)}"]


def json_line(data: bytes) -> str:
    """The message's JSON on one line (compacted only when the sender spread it over several)."""
    if b"\n" not in data and b"\r" not in data:
        return data.decode("utf-8", "replace")
    try:
        return msgspec.json.encode(_json.decode(data)).decode()
    except msgspec.DecodeError:
        return data.decode("utf-8", "replace").replace("\r", "\\r").replace("\n", "\\n")


class Printer:
    """Writes messages as lines to stdout; raises ``_Done`` after ``count`` lines."""

    def __init__(self, as_json: bool, count: int | None, out=None) -> None:  # type: ignore[no-untyped-def]
        self.as_json = as_json
        self.count = count
        self.written = 0
        self.out = out or sys.stdout

    def emit(self, subject: str, data: bytes, when_ms: int) -> None:
        if self.as_json:
            lines = [json_line(data)]
        else:
            stamp = _iso(when_ms)
            lines = [f"{stamp} {line}" for line in message_lines(subject, data)]
        for line in lines:
            self.out.write(line + "\n")
            self.written += 1
            if self.count is not None and self.written >= self.count:
                self.out.flush()
                raise _Done
        self.out.flush()


# --------------------------------------------------------------------------- reading the log

JS_API = "$JS.API"
#: Messages per pull request when scanning history, and the bytes one request may bring.
SCAN_BATCH = 5000
SCAN_MAX_BYTES = 16 * 1024 * 1024
SCAN_REPLY_TIMEOUT_S = 15.0


async def scan_messages(nc, stream: str, filters: Sequence[str], first_seq: int,  # type: ignore[no-untyped-def]
                        last_seq: int, batch: int = SCAN_BATCH) -> AsyncIterator[list]:
    """Messages of ``stream`` matching ``filters`` from ``first_seq`` to ``last_seq``, in batches.

    The same ephemeral pull consumer as ``services.metrics.replay.read_messages``, read with
    ``no_wait`` pull requests into a callback subscription rather than ``fetch``: fetch waits
    for each message with its own timeout task, which made a 1M-message scan about four
    times slower. Only the last message of a batch has its metadata parsed.
    """
    from nats.js import api

    if last_seq < max(first_seq, 1):
        return
    js = nc.jetstream(timeout=10)
    consumer = await js.add_consumer(stream, api.ConsumerConfig(
        name=f"scan-{secrets.token_hex(8)}",  # a named create: grantable per stream, see deploy/nats
        ack_policy=api.AckPolicy.NONE,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(first_seq, 1),
        filter_subjects=list(filters),
        inactive_threshold=30.0,
        mem_storage=True,
    ))
    next_subject = f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{consumer.name}"
    request = json.dumps({"batch": batch, "max_bytes": SCAN_MAX_BYTES, "no_wait": True}).encode()
    ahead = asyncio.ensure_future(_pull(nc, next_subject, request, batch, stream))
    try:
        while True:
            msgs, status = await ahead
            if not msgs:
                if status and status[0] not in ("404", "408"):
                    raise OpsError(f"JetStream stopped the read of {stream}: {' '.join(status)}")
                return
            meta = msgs[-1].metadata
            if meta.sequence.stream > last_seq:
                msgs = [m for m in msgs if m.metadata.sequence.stream <= last_seq]
                if msgs:
                    yield msgs
                return
            more = meta.num_pending > 0 and meta.sequence.stream < last_seq
            if more:  # the next batch travels while the caller reads this one
                ahead = asyncio.ensure_future(_pull(nc, next_subject, request, batch, stream))
            yield msgs
            if not more:
                return
    finally:
        if not ahead.done():
            ahead.cancel()
            try:
                await ahead
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        try:
            await asyncio.wait_for(js.delete_consumer(stream, consumer.name), 2)
        except Exception:  # noqa: BLE001 - it goes away by itself after inactive_threshold
            pass


async def _pull(nc, subject: str, request: bytes, batch: int, stream: str) -> tuple[list, tuple[str, ...]]:  # type: ignore[no-untyped-def]
    """One ``no_wait`` pull request: the messages it brought and the status that ended it, if any."""
    got: list = []
    status: list[str] = []
    done = asyncio.Event()

    async def on_msg(msg) -> None:  # type: ignore[no-untyped-def]
        headers = msg.headers or {}
        if not msg.data and "Status" in headers:
            status[:] = [headers.get("Status", ""), headers.get("Description", "")]
            done.set()
            return
        got.append(msg)
        if len(got) >= batch:
            done.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_msg, pending_msgs_limit=batch * 2,
                             pending_bytes_limit=SCAN_MAX_BYTES * 4)
    try:
        await nc.publish(subject, request, reply=inbox)
        try:
            await asyncio.wait_for(done.wait(), SCAN_REPLY_TIMEOUT_S)
        except TimeoutError:
            if not got:
                raise OpsError(f"JetStream did not answer a read of {stream} within "
                               f"{SCAN_REPLY_TIMEOUT_S:.0f} s") from None
    finally:
        await _unsubscribe(sub)
    return got, tuple(s_ for s_ in status if s_)


# --------------------------------------------------------------------------- tail


async def _tail(args: argparse.Namespace) -> int:
    pattern = args.subject
    if not valid_pattern(pattern):
        raise OpsError(f"{pattern!r} is not a NATS subject pattern (tokens separated by '.', '*' or a final '>')")
    plan = stream_filters(pattern) if args.from_start else []
    if args.from_start and not plan:
        held = ", ".join(f"{name} ({' '.join(subs)})" for name, subs in s.STREAM_SUBJECTS.items())
        raise OpsError(f"no stream stores subjects matching {pattern}; the streams hold {held}")
    settings = _settings(args)
    nc = await _connect(settings, "tail", follow=True)
    printer = Printer(args.json, args.count)
    try:
        if args.from_start:
            await _tail_history(nc, plan, printer, settings.nats_url)
        else:
            await _tail_live(nc, pattern, printer, settings.nats_url)
    except* _Done:
        pass
    finally:
        await _close(nc)
    return 0


async def _tail_live(nc, pattern: str, printer: Printer, url: str) -> None:  # type: ignore[no-untyped-def]
    sub = await nc.subscribe(pattern)
    await nc.flush()
    _note(f"tailing {pattern} on {url} (Ctrl-C to stop)")
    try:
        async for msg in sub.messages:
            printer.emit(msg.subject, msg.data, _now_ms())
    finally:
        await _unsubscribe(sub)


async def _unsubscribe(sub) -> None:  # type: ignore[no-untyped-def]
    try:
        await asyncio.wait_for(sub.unsubscribe(), 2)
    except Exception:  # noqa: BLE001 - the connection may be gone already
        pass


async def _tail_history(nc, plan: list[tuple[str, list[str]]], printer: Printer, url: str) -> None:  # type: ignore[no-untyped-def]
    from nats.js.errors import NotFoundError

    js = nc.jetstream(timeout=10)
    ends: dict[str, int] = {}
    for stream, _ in plan:
        try:
            ends[stream] = (await js.stream_info(stream)).state.last_seq
        except NotFoundError:
            _note(f"{PROG} tail: stream {stream} does not exist (run `{PROG} bootstrap`); skipped")
    plan = [(stream, filters) for stream, filters in plan if stream in ends]
    if not plan:
        raise OpsError("none of the streams holding these subjects exists")
    described = "; ".join(f"{stream} {' '.join(filters)}" for stream, filters in plan)
    _note(f"reading history of {described} on {url}")
    sources = [scan_messages(nc, stream, filters, 1, ends[stream]) for stream, filters in plan]
    try:
        async for msg in merge_by_time(sources):
            printer.emit(msg.subject, msg.data, _ms_of(msg))
    finally:
        for source in sources:
            await source.aclose()
    _note("end of history; following live (Ctrl-C to stop)")
    async with asyncio.TaskGroup() as group:
        for stream, filters in plan:
            group.create_task(_follow(js, stream, filters, ends[stream] + 1, printer))


async def merge_by_time(sources: Sequence[AsyncIterator[list]]) -> AsyncIterator:
    """Messages of several streams (each in its own order) in stream-time order."""
    buffers: list[deque] = [deque() for _ in sources]
    heap: list[tuple[datetime, int, int, Any]] = []

    async def refill(i: int) -> bool:
        while not buffers[i]:
            try:
                buffers[i].extend(await anext(sources[i]))
            except StopAsyncIteration:
                return False
        return True

    def push(i: int) -> None:
        m = buffers[i].popleft()
        heapq.heappush(heap, (m.metadata.timestamp, i, m.metadata.sequence.stream, m))

    for i in range(len(sources)):
        if await refill(i):
            push(i)
    while heap:
        *_, i, _seq, msg = heapq.heappop(heap)
        yield msg
        if await refill(i):
            push(i)


async def _follow(js, stream: str, filters: list[str], start_seq: int, printer: Printer) -> None:  # type: ignore[no-untyped-def]
    """Keep reading new messages from ``start_seq``; recreate the consumer if it is lost."""
    import nats.errors
    import nats.js.errors
    from nats.js import api

    seq = start_seq
    sub = None
    try:
        while True:
            if sub is None:
                config = api.ConsumerConfig(
                    ack_policy=api.AckPolicy.NONE,
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=max(seq, 1),
                    filter_subjects=filters,
                    inactive_threshold=60.0,
                    mem_storage=True,
                )
                try:
                    sub = await js.pull_subscribe("", stream=stream, config=config)
                except (nats.errors.Error, nats.js.errors.Error, OSError):
                    await asyncio.sleep(1.0)
                    continue
            try:
                msgs = await sub.fetch(500, timeout=5.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except (nats.errors.Error, nats.js.errors.Error, OSError):
                await _unsubscribe(sub)  # consumer gone (restart, inactivity): start again after `seq`
                sub = None
                await asyncio.sleep(1.0)
                continue
            for m in msgs:
                seq = m.metadata.sequence.stream + 1
                printer.emit(m.subject, m.data, _ms_of(m))
    finally:
        if sub is not None:
            await _unsubscribe(sub)


# --------------------------------------------------------------------------- trace

#: What a trace reads: every subject that can mention an alert (not clock ticks or reports).
TRACE_FILTERS: dict[str, list[str]] = {
    s.STREAM_IN: [s.IN_CSP_NORTH, s.IN_CSP_CENTRAL, s.IN_CSP_SOUTH, s.IN_DSP_DELIVERY],
    s.STREAM_EVENTS: [s.CAPTURED, s.ENRICHED, s.RESPONSE_SEEN, f"{s.EXPECTED}.*", f"{s.ATTEMPTED}.*",
                      s.DELIVER, f"{s.REJECTED}.*", f"{s.DEAD_LETTER}.*"],
    s.STREAM_OUT: [s.RECORD],
}
STREAM_ORDER = {name: i for i, name in enumerate(s.STREAM_SUBJECTS)}


def base64_needles(text: bytes) -> list[bytes]:
    """The Base64 forms ``text`` takes inside any Base64 string, whatever its alignment."""
    needles = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + text)
        start = -(-shift * 8 // 6)
        end = (shift + len(text)) * 8 // 6
        if end - start >= 4:
            needles.append(encoded[start:end])
    return needles or [base64.b64encode(text).rstrip(b"=")]


@dataclass
class Step:
    """One fact of the journey: where it is in the log and what it says."""

    time_ms: int
    stream: str
    seq: int
    subject: str
    kind: str
    data: dict
    index: int = 0

    def sort_key(self) -> tuple:
        return (self.time_ms, STREAM_ORDER.get(self.stream, 9), self.seq, self.index)


class Matcher:
    """Finds the messages that mention one response id: a byte prefilter, then an exact check."""

    def __init__(self, response_id: str) -> None:
        self.response_id = response_id
        self.quoted = msgspec.json.encode(response_id)
        # Every JSON form carries the id as a string: look for it with its quotes (so "R1" does
        # not match "R10"), unless JSON escapes some of its characters.
        plain = self.quoted == b'"' + response_id.encode() + b'"' and response_id.isascii()
        self.needle = self.quoted if plain else response_id.encode()
        self.b64 = base64_needles(self.needle)

    def candidate(self, subject: str, data: bytes) -> bool:
        if self.needle in data:
            return True
        if subject.startswith((s.REJECTED + ".", s.DEAD_LETTER + ".")):
            return any(n in data for n in self.b64)
        return False

    def steps(self, stream: str, msg) -> list[Step]:  # type: ignore[no-untyped-def]
        subject, data = msg.subject, msg.data
        if not self.candidate(subject, data):
            return []
        when, seq = _ms_of(msg), msg.metadata.sequence.stream

        def step(kind: str, obj: dict, index: int = 0) -> Step:
            return Step(when, stream, seq, subject, kind, obj, index)

        rid = self.response_id
        try:
            obj = _json.decode(data)
        except msgspec.DecodeError:
            obj = None
        if subject.startswith("ast.in."):
            kind = "delivery_log" if subject == s.IN_DSP_DELIVERY else "inbound"
            if isinstance(obj, dict):
                ids = (obj.get("responseId"), obj.get("messageId"))
                return [step(kind, obj)] if rid in ids else []
            return [step(f"{kind}_unreadable", {"raw": shorten(data, 400)})] if self.quoted in data else []
        if not isinstance(obj, dict):
            return []
        if subject.startswith((s.REJECTED + ".", s.DEAD_LETTER + ".")):
            return [step("rejected_input", obj)] if self._mentions(obj) else []
        if subject == s.DELIVER:
            return [step("deliver", obj)] if obj.get("responseId") == rid else []
        if subject == s.RECORD:
            return [step("record", obj)] if obj.get("response_id") == rid else []
        events = obj.get("events")
        if not isinstance(events, list):
            return []
        return [step(str(e.get("type")), e, i) for i, e in enumerate(events)
                if isinstance(e, dict) and e.get("response_id") == rid]

    def _mentions(self, rejection: dict) -> bool:
        if self.response_id in str(rejection.get("message", "")):
            return True
        try:
            raw = binascii.a2b_base64(rejection.get("raw") or "")
        except (binascii.Error, ValueError, TypeError):
            return False
        return self.quoted in raw


@dataclass
class Journey:
    response_id: str
    steps: list[Step] = field(default_factory=list)
    scanned: dict[str, int] = field(default_factory=dict)
    missing_streams: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Progress:
    """``\\r``-updated scan progress on stderr, only on a terminal and only for long scans."""

    def __init__(self, ranges: dict[str, tuple[int, int]]) -> None:
        self.ranges = ranges
        self.at = {name: first - 1 for name, (first, _) in ranges.items()}
        self.total = sum(max(0, last - first + 1) for first, last in ranges.values())
        self.started = time.monotonic()
        self.shown = 0.0
        self.enabled = sys.stderr.isatty()

    def update(self, stream: str, seq: int) -> None:
        self.at[stream] = seq
        now = time.monotonic()
        if not self.enabled or now - self.started < 1.0 or now - self.shown < 0.25:
            return
        self.shown = now
        done = sum(max(0, self.at[n] - first + 1) for n, (first, _) in self.ranges.items())
        pct = 100.0 * done / self.total if self.total else 100.0
        print(f"\rscanning the event log: {done:,}/{self.total:,} messages ({pct:.0f}%)",
              end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.enabled and self.shown:
            print("\r" + " " * 70 + "\r", end="", file=sys.stderr, flush=True)


async def find_journey(nc, response_id: str) -> Journey:  # type: ignore[no-untyped-def]
    """Scan the event log for every message about ``response_id`` (streams read concurrently)."""
    from nats.js.errors import NotFoundError

    js = nc.jetstream(timeout=10)
    started = time.perf_counter()
    journey = Journey(response_id)
    matcher = Matcher(response_id)
    ranges: dict[str, tuple[int, int]] = {}
    for stream in TRACE_FILTERS:
        try:
            state = (await js.stream_info(stream)).state
        except NotFoundError:
            journey.missing_streams.append(stream)
            continue
        if state.messages == 0:
            journey.scanned[stream] = 0
            continue
        ranges[stream] = (state.first_seq, state.last_seq)
    progress = Progress(ranges)

    async def scan(stream: str) -> None:
        first, last = ranges[stream]
        count = 0
        async for batch in scan_messages(nc, stream, TRACE_FILTERS[stream], first, last):
            count += len(batch)
            for msg in batch:
                journey.steps.extend(matcher.steps(stream, msg))
            progress.update(stream, batch[-1].metadata.sequence.stream)
        journey.scanned[stream] = count

    try:
        await asyncio.gather(*(scan(stream) for stream in ranges))
    finally:
        progress.finish()
    journey.steps.sort(key=Step.sort_key)
    journey.scanned = {name: journey.scanned[name] for name in TRACE_FILTERS if name in journey.scanned}
    journey.seconds = time.perf_counter() - started
    return journey


def _first(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return min(present) if present else None


def _minus(a: int | None, b: int | None) -> int | None:
    return a - b if a is not None and b is not None else None


def delivery_summaries(journey: Journey) -> list[dict]:
    """Per delivery: timing points and legs from the events, the attempts, the records."""
    expected: dict[str, dict] = {}
    attempts: dict[str, list[dict]] = {}
    records: dict[str, list[dict]] = {}
    notices: dict[str, dict] = {}
    for st in journey.steps:
        if st.kind == "delivery_expected":
            expected.setdefault(st.data.get("delivery_id"), st.data)
        elif st.kind == "delivery_attempted":
            attempts.setdefault(st.data.get("delivery_id"), []).append(st.data)
        elif st.kind == "record":
            records.setdefault(st.data.get("delivery_id"), []).append(st.data)
        elif st.kind == "deliver":
            notices.setdefault(st.data.get("deliveryId"), st.data)
    out = []
    for delivery_id in sorted(set(expected) | set(attempts) | set(records) | set(notices), key=str):
        exp = expected.get(delivery_id, {})
        tries = sorted(attempts.get(delivery_id, []), key=lambda a: a.get("su_passed") or 0)
        unique = {a.get("event_id") or json.dumps(a, sort_keys=True): a for a in tries}
        tries = list(unique.values())
        su_passed = _first(a.get("su_passed") for a in tries)
        su_ack = _first(a.get("su_acknowledged") for a in tries if a.get("outcome") == "acknowledged")
        points = {
            "device_alert_time": exp.get("device_alert_time"),
            "chf_received": exp.get("chf_received"),
            "csp_received": exp.get("csp_received"),
            "csp_sent": exp.get("csp_sent"),
            "dsp_received": exp.get("dsp_received"),
            "su_passed": su_passed,
            "su_acknowledged": su_ack,
        }
        legs = {
            "hub_to_csp": _minus(points["csp_received"], points["chf_received"]),
            "csp_to_dsp": _minus(points["dsp_received"], points["csp_sent"]),
            "dsp_to_su": _minus(points["su_passed"], points["dsp_received"]),
            "su_handshake": _minus(points["su_acknowledged"], points["su_passed"]),
            "end_to_end": _minus(points["su_acknowledged"], points["chf_received"]),
        }
        if not exp:
            status = "delivery_without_alert"
        elif su_ack is not None:
            status = "complete"
        elif su_passed is not None:
            status = "no_handshake"
        else:
            status = "awaiting_delivery_log"
        recs = sorted(records.get(delivery_id, []), key=lambda r: r.get("revision") or 0)
        notice = notices.get(delivery_id, {})
        out.append({
            "delivery_id": delivery_id,
            "category": exp.get("category"),
            "alert_code": exp.get("alert_code"),
            "dcc_alert_code": exp.get("dcc_alert_code", notice.get("dccAlertCode")),
            "service_user_id": exp.get("service_user_id", notice.get("serviceUserId")),
            "deliver_notice": bool(notice),
            "status": status,
            "timing_points": {k: format_iso(v) if isinstance(v, int) else None for k, v in points.items()},
            "legs_ms": legs,
            "clock_skew": sorted(k for k, v in legs.items() if v is not None and v < 0),
            "attempts": [{"outcome": a.get("outcome"), "su_passed": format_iso(a.get("su_passed")),
                          "su_acknowledged": format_iso(a.get("su_acknowledged"))} for a in tries],
            "records": recs,
        })
    return out


def journey_json(journey: Journey) -> dict:
    return {
        "response_id": journey.response_id,
        "found": bool(journey.steps),
        "scanned": journey.scanned,
        "missing_streams": journey.missing_streams,
        "events": [{"time": format_iso(st.time_ms), "stream": st.stream, "seq": st.seq, "subject": st.subject,
                    "kind": st.kind, "event": st.data} for st in journey.steps],
        "deliveries": delivery_summaries(journey),
        "dcc_alerts": [{"delivery_id": st.data.get("delivery_id"), "dcc_alert_code": st.data.get("dcc_alert_code"),
                        "service_user_id": st.data.get("service_user_id")}
                       for st in journey.steps if st.kind == "delivery_expected"
                       and st.data.get("category") == "dcc_alert"],
        "rejections": [{"stage": st.data.get("stage"), "reason": st.data.get("reason"),
                        "message": st.data.get("message"), "subject": st.subject, "seq": st.seq}
                       for st in journey.steps if st.kind == "rejected_input"],
    }


def _step_text(st: Step) -> str:
    if st.kind in ("inbound", "delivery_log"):
        return f"{st.kind} {shorten(msgspec.json.encode(st.data), 160)}"
    if st.kind.endswith("_unreadable"):
        return f"{st.kind} {st.data.get('raw', '')[:160]}"
    if st.kind == "deliver":
        return deliver_summary(st.data)
    if st.kind == "record":
        return record_summary(st.data)
    if st.kind == "rejected_input":
        return rejection_summary(st.data)
    return event_summary(st.data)


def journey_text(journey: Journey) -> str:
    total = sum(journey.scanned.values())
    lines = [f"alert {journey.response_id}: {len(journey.steps)} events "
             f"({total:,} messages of {', '.join(journey.scanned) or 'no stream'} scanned in {journey.seconds:.1f} s)"]
    if journey.missing_streams:
        lines.append(f"missing streams: {', '.join(journey.missing_streams)}")
    lines.append("")
    width = max((len(f"{st.stream}#{st.seq}") for st in journey.steps), default=10)
    subj_width = max((len(st.subject) for st in journey.steps), default=10)
    for st in journey.steps:
        where = f"{st.stream}#{st.seq}"
        lines.append(f"{_iso(st.time_ms)}  {where:<{width}}  {st.subject:<{subj_width}}  {_step_text(st)}")
    dcc = [st.data for st in journey.steps if st.kind == "delivery_expected" and st.data.get("category") == "dcc_alert"]
    if dcc:
        lines += ["", "DCC alerts raised: " + ", ".join(f"{d.get('dcc_alert_code')} ({d.get('delivery_id')})"
                                                          for d in dcc)]
    for d in delivery_summaries(journey):
        lines.append("")
        head = f"delivery {d['delivery_id']}"
        if d["category"]:
            head += f"  {d['category']}"
        if d["dcc_alert_code"]:
            head += f" {d['dcc_alert_code']}"
        head += f"  to {d['service_user_id'] or '-'}  status {d['status']} (from the events)"
        lines.append(head)
        for name, value in d["timing_points"].items():
            lines.append(f"  {name:<18}{value or '-'}")
        legs = "  ".join(f"{k} {'-' if v is None else v}" for k, v in d["legs_ms"].items())
        lines.append(f"  {'legs (ms)':<18}{legs}")
        if d["clock_skew"]:
            lines.append(f"  {'clock skew':<18}negative: {', '.join(d['clock_skew'])}")
        tries = ", ".join(f"{a['outcome']} (passed {a['su_passed'] or '-'})" for a in d["attempts"]) or "none yet"
        lines.append(f"  {'attempts':<18}{tries}")
        for r in d["records"]:
            rec_legs = "  ".join(f"{k} {'-' if r.get(f'{k}_ms') is None else r.get(f'{k}_ms')}" for k in LEG_NAMES)
            same = all(r.get(f"{k}_ms") == d["legs_ms"][k] for k in LEG_NAMES)
            lines.append(f"  {'record rev ' + str(r.get('revision')):<18}{r.get('status')}  {rec_legs}"
                         + ("" if same else "  (differs from the events)"))
        if not d["records"]:
            lines.append(f"  {'record':<18}none yet")
    rejected = [st for st in journey.steps if st.kind == "rejected_input"]
    if rejected:
        lines += ["", f"rejections: {len(rejected)}"]
    return "\n".join(lines)


async def _trace(args: argparse.Namespace) -> int:
    response_id = args.response_id.strip()
    if not response_id:
        raise OpsError("RESPONSE_ID must not be empty")
    settings = _settings(args)
    nc = await _connect(settings, "trace")
    try:
        journey = await find_journey(nc, response_id)
    finally:
        await _close(nc)
    if not journey.steps:
        total = sum(journey.scanned.values())
        where = ", ".join(journey.scanned) or "no stream"
        extra = f" (missing streams: {', '.join(journey.missing_streams)})" if journey.missing_streams else ""
        raise OpsError(f"no event mentions response id {response_id!r} in {where} "
                       f"({total:,} messages scanned){extra}", code=1)
    if args.json:
        print(json.dumps(journey_json(journey), sort_keys=True))
    else:
        print(journey_text(journey))
    return 0


# --------------------------------------------------------------------------- status


def _ts(value: object) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value and not value.startswith("0001-01-01"):
        return value
    return None


async def collect_status(nc, partitions: int) -> dict:  # type: ignore[no-untyped-def]
    import nats.errors
    import nats.js.errors
    from nats.js.errors import NotFoundError

    from shared import bus

    js = nc.jetstream(timeout=5)
    version = nc.connected_server_version
    result: dict[str, Any] = {"server_version": f"{version.major}.{version.minor}.{version.patch}" if version else None,
                              "streams": [], "consumers": [], "other_consumers": [],
                              "rejected": {}, "dead_letter": {}, "problems": []}
    existing: list[str] = []
    for name in s.STREAM_SUBJECTS:
        reply = await nc.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=5)
        info = json.loads(reply.data)
        if "error" in info:
            result["streams"].append({"name": name, "exists": False, "error": info["error"].get("description")})
            result["problems"].append(f"stream {name} is missing")
            continue
        existing.append(name)
        state = info.get("state", {})
        result["streams"].append({
            "name": name,
            "exists": True,
            "subjects": info.get("config", {}).get("subjects", []),
            "messages": state.get("messages", 0),
            "bytes": state.get("bytes", 0),
            "first_seq": state.get("first_seq", 0),
            "first_time": _ts(state.get("first_ts")),
            "last_seq": state.get("last_seq", 0),
            "last_time": _ts(state.get("last_ts")),
            "consumer_count": state.get("consumer_count", 0),
        })
    known: set[tuple[str, str]] = set()
    for spec in bus.consumer_specs(partitions):
        known.add((spec.stream, spec.durable))
        entry: dict[str, Any] = {"service": spec.service, "stream": spec.stream, "durable": spec.durable,
                                 "filter_subjects": list(spec.filter_subjects)}
        try:
            info = await js.consumer_info(spec.stream, spec.durable)
        except NotFoundError:
            entry["exists"] = False
            result["consumers"].append(entry)
            result["problems"].append(f"consumer {spec.stream}/{spec.durable} is missing")
            continue
        except (nats.errors.TimeoutError, TimeoutError, nats.js.errors.APIError) as exc:
            entry["exists"] = None
            entry["error"] = _describe(exc) + _server_said()
            result["consumers"].append(entry)
            result["problems"].append(f"consumer {spec.stream}/{spec.durable} could not be read")
            continue
        result["consumers"].append(entry | _consumer_fields(info))
    for name in existing:
        try:
            infos = await js.consumers_info(name)
        except Exception:  # noqa: BLE001 - listing is a nicety
            continue
        for info in infos:
            durable = info.config.durable_name
            if durable and (name, durable) not in known:
                result["other_consumers"].append({"stream": name, "durable": durable,
                                                  "filter_subjects": _filters(info.config)}
                                                 | _consumer_fields(info))
    if s.STREAM_EVENTS in existing:
        for key, prefix in (("rejected", s.REJECTED), ("dead_letter", s.DEAD_LETTER)):
            info = await js.stream_info(s.STREAM_EVENTS, subjects_filter=f"{prefix}.>")
            result[key] = {subject[len(prefix) + 1:]: count
                           for subject, count in sorted((info.state.subjects or {}).items())}
    return result


def _filters(config) -> list[str]:  # type: ignore[no-untyped-def]
    if config.filter_subjects:
        return list(config.filter_subjects)
    return [config.filter_subject] if config.filter_subject else []


def _consumer_fields(info) -> dict:  # type: ignore[no-untyped-def]
    delivered = info.delivered
    floor = info.ack_floor
    waiting = info.num_waiting or 0
    return {
        "exists": True,
        "num_pending": info.num_pending or 0,
        "num_ack_pending": info.num_ack_pending or 0,
        "num_redelivered": info.num_redelivered or 0,
        "num_waiting": waiting,
        "pulling": waiting > 0,
        "delivered_stream_seq": delivered.stream_seq if delivered else 0,
        "ack_floor_stream_seq": floor.stream_seq if floor else 0,
        "last_delivered": _ts(delivered.last_active) if delivered else None,
        "last_acked": _ts(floor.last_active) if floor else None,
    }


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def status_text(result: dict, url: str) -> str:
    lines = [f"NATS {url}" + (f" (server {result['server_version']})" if result.get("server_version") else ""), ""]
    lines.append(f"{'stream':<12}{'messages':>10}{'bytes':>12}{'first seq':>11}  {'first time':<26}"
                 f"{'last seq':>10}  {'last time':<26}")
    for st in result["streams"]:
        if not st["exists"]:
            lines.append(f"{st['name']:<12}missing (run `{PROG} bootstrap`)")
            continue
        lines.append(f"{st['name']:<12}{st['messages']:>10,}{_size(st['bytes']):>12}{st['first_seq']:>11}  "
                     f"{st['first_time'] or '-':<26}{st['last_seq']:>10}  {st['last_time'] or '-':<26}")
    lines.append("")
    lines.append(f"{'service':<16}{'consumer':<30}{'pending':>9}{'ack pending':>13}{'redelivered':>13}"
                 f"{'ack floor':>11}  pulls")
    for c in result["consumers"] + result["other_consumers"]:
        name = f"{c['stream']}/{c['durable']}"
        service = c.get("service", "(other)")
        if c.get("exists") is None:
            lines.append(f"{service:<16}{name:<30}cannot read: {c.get('error')}")
            continue
        if not c.get("exists", True):
            lines.append(f"{service:<16}{name:<30}missing (run `{PROG} bootstrap`)")
            continue
        pulls = f"{c['num_waiting']} waiting" if c["pulling"] else "none waiting"
        lines.append(f"{service:<16}{name:<30}{c['num_pending']:>9,}{c['num_ack_pending']:>13,}"
                     f"{c['num_redelivered']:>13,}{c['ack_floor_stream_seq']:>11}  {pulls}")
    lines.append("")
    for key, label in (("rejected", "rejected by stage"), ("dead_letter", "dead letters by stage")):
        counts = result[key]
        text = ", ".join(f"{stage} {n:,}" for stage, n in counts.items()) if counts else "none"
        lines.append(f"{label + ':':<24}{text}")
    if result["problems"]:
        lines += ["", "problems: " + "; ".join(result["problems"])]
    return "\n".join(lines)


async def _status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    nc = await _connect(settings, "status")
    try:
        result = await collect_status(nc, settings.metrics_partitions)
    finally:
        await _close(nc)
    result["nats_url"] = settings.nats_url
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(status_text(result, settings.nats_url))
    return 1 if result["problems"] else 0


# --------------------------------------------------------------------------- docs (AsyncAPI)

ASYNCAPI_VERSION = "3.0.0"
SCHEMA_REF = "#/components/schemas/{name}"
_TIMESTAMP_PATTERN = r"^[0-9]{14}\.[0-9]{3}$"


def _csp_timestamp(description: str, nullable: bool = False) -> dict:
    schema = {"type": "string", "pattern": _TIMESTAMP_PATTERN, "description": f"{description} (YYYYMMDDHHMMSS.SSS, UTC)",
              "examples": ["20230601101502.450"]}
    if nullable:
        text = schema.pop("description")
        return {"description": text, "anyOf": [schema, {"type": "null"}]}
    return schema


def inbound_schemas() -> dict[str, dict]:
    """JSON Schemas of the raw inbound objects, as hub-capture and dsp-mapping validate them."""
    from services.dsp_mapping.core import DCC_ALERT_CODES, OUTCOMES
    from services.validation import UINT32_MAX
    from shared.settings import Settings

    defaults = Settings()
    limits = (f"Limits: the message at most {defaults.max_message_bytes} bytes (ALERT_TIMING_MAX_MESSAGE_BYTES), "
              f"JSON nested at most {defaults.max_json_depth} levels. Anything else is rejected whole "
              f"to ast.rejected.<stage> with a machine-readable reason.")
    hub_id = {"type": "integer", "minimum": 0, "maximum": UINT32_MAX,
              "description": "Comms Hub REP ID: unsigned 32-bit integer (up to 10 digits)"}
    payload = {"type": "string", "minLength": 1, "maxLength": defaults.max_payload_b64_chars,
               "contentEncoding": "base64",
               "description": "Base64 of the GBCS Service Response or Device Alert "
                              f"(at most {defaults.max_payload_b64_chars} characters: "
                              "ALERT_TIMING_MAX_PAYLOAD_B64_CHARS)"}

    def text(description: str, max_len: int = 128) -> dict:
        return {"type": "string", "minLength": 1, "maxLength": max_len, "description": description}

    return {
        "CspNorthRniMessage": {
            "title": "CspNorthRniMessage",
            "description": "CSP North RNI `sendMessage` JSON object, published unchanged. Fields other than "
                           "the ones listed are allowed and kept (AlertCaptured.extra). `timestamp` is when "
                           "the alert left CSP North; it stands for csp_received less "
                           "ALERT_TIMING_CSP_NORTH_OFFSET_MS (flag csp_received_mapped). " + limits,
            "type": "object",
            "properties": {
                "responseId": text("globally unique; the alert's identity for auditing"),
                "commsHubId": hub_id,
                "payload": payload,
                "timestamp": _csp_timestamp("when CSP North passed the alert to the DSP: csp_sent"),
                "HubTimestamp": _csp_timestamp("applied by the hub SDK: chf_received (optional)", nullable=True),
            },
            "required": ["responseId", "commsHubId", "payload", "timestamp"],
            "additionalProperties": True,
        },
        "CspFeedMessage": {
            "title": "CspFeedMessage",
            "description": "CSP Central / CSP South feed object, published unchanged; `messageId` plays the "
                           "part of `responseId` downstream. Other fields are allowed and kept. " + limits,
            "type": "object",
            "properties": {
                "messageId": text("globally unique; becomes response_id downstream"),
                "commsHubId": hub_id,
                "payload": payload,
                "chfReceivedTimestamp": _csp_timestamp("received by the Comms Hub: chf_received (optional)",
                                                       nullable=True),
                "cspReceivedTimestamp": _csp_timestamp("received by the CSP: csp_received"),
                "cspSentTimestamp": _csp_timestamp("passed to the DSP: csp_sent"),
            },
            "required": ["messageId", "commsHubId", "payload", "cspReceivedTimestamp", "cspSentTimestamp"],
            "additionalProperties": True,
        },
        "DeliveryLogLine": {
            "title": "DeliveryLogLine",
            "description": "One line of the DSP delivery log: one attempt to pass an alert (device alert or "
                           "DCC alert) to a Service User. A failed attempt has no acknowledgement; a later "
                           "line for the same delivery is a retry. " + limits,
            "type": "object",
            "properties": {
                "deliveryId": text("the delivery: the responseId for a device alert, "
                                   "<responseId>:<DCC code>:<n> for a DCC alert", 160),
                "responseId": text("the alert that caused the delivery"),
                "dccAlertCode": {"description": "the DCC alert delivered, or null for a device alert",
                                 "anyOf": [{"enum": sorted(DCC_ALERT_CODES)}, {"type": "null"}]},
                "serviceUserId": text("the Service User (EUI-64)"),
                "suPassedTimestamp": _csp_timestamp("passed to the Service User: su_passed"),
                "suAcknowledgedTimestamp": _csp_timestamp(
                    "the Service User's handshake: su_acknowledged (required when outcome is acknowledged, "
                    "ignored when failed)", nullable=True),
                "outcome": {"enum": sorted(OUTCOMES), "description": "acknowledged or failed"},
            },
            "required": ["deliveryId", "responseId", "serviceUserId", "suPassedTimestamp", "outcome"],
            "if": {"properties": {"outcome": {"const": "acknowledged"}}, "required": ["outcome"]},
            "then": {"properties": {"suAcknowledgedTimestamp": {"type": "string"}},
                     "required": ["suAcknowledgedTimestamp"]},
            "additionalProperties": True,
        },
        "ClockHeartbeat": {
            "title": "ClockHeartbeat",
            "description": "The DSP gateway's clock: moves event time on (closes 15-minute windows) when "
                           "traffic stops. At most 4096 bytes.",
            "type": "object",
            "properties": {"time": _csp_timestamp("the DSP gateway's current time")},
            "required": ["time"],
            "additionalProperties": True,
        },
        "InboundHeaders": {
            "title": "InboundHeaders",
            "description": "NATS headers of an inbound message (all optional).",
            "type": "object",
            "properties": {
                "Dsp-Received-Timestamp": _csp_timestamp(
                    "the DSP gateway's receive time: dsp_received (absent: the stream's own time)"),
                "traceparent": {"type": "string", "description": "W3C trace context of the alert's trace"},
                "Nats-Msg-Id": {"type": "string", "description": "JetStream de-duplication id"},
            },
        },
        "EventHeaders": {
            "title": "EventHeaders",
            "description": "NATS headers of a message the services publish.",
            "type": "object",
            "properties": {
                "Nats-Msg-Id": {"type": "string", "description": (
                    "deterministic id, so a redelivered input gives the same message and JetStream drops the "
                    "copy: batch:<hash of the event ids>, dlv:<delivery_id>, rec:<delivery_id>:<revision>, "
                    "report:<partition>:<window_start>:<revision>, rej:<stage>:<subject>:<seq>")},
            },
            "required": ["Nats-Msg-Id"],
        },
    }


#: Intermediate subjects: the event type inside their envelopes.
ENVELOPES: dict[str, tuple[str, str]] = {
    "captured": ("AlertCaptured", "CapturedBatch"),
    "enriched": ("AlertEnriched", "EnrichedBatch"),
    "responseSeen": ("ServiceResponseSeen", "ResponseSeenBatch"),
    "expected": ("DeliveryExpected", "ExpectedBatch"),
    "attempted": ("DeliveryAttempted", "AttemptedBatch"),
    "clock": ("ClockTick", "ClockBatch"),
}


@dataclass(frozen=True)
class Channel:
    id: str
    address: str
    message: str
    description: str
    parameters: dict[str, dict] = field(default_factory=dict)


def channels() -> list[Channel]:
    partition = {"partition": {"description": "metrics partition of the delivery: "
                                              "crc32(delivery_id) % ALERT_TIMING_METRICS_PARTITIONS",
                               "examples": ["0"]}}
    stage = {"stage": {"description": "the stage that could not use the input", "enum": list(s.SERVICES)}}
    return [
        Channel("inCspNorth", s.IN_CSP_NORTH, "CspNorthRni",
                "CSP North RNI messages, the bytes exactly as sent."),
        Channel("inCspCentral", s.IN_CSP_CENTRAL, "CspCentralFeed",
                "CSP Central feed messages, the bytes exactly as sent."),
        Channel("inCspSouth", s.IN_CSP_SOUTH, "CspSouthFeed",
                "CSP South feed messages, the bytes exactly as sent."),
        Channel("inDspDelivery", s.IN_DSP_DELIVERY, "DeliveryLogLine",
                "The DSP delivery log, one line per message, as written."),
        Channel("inDspClock", s.IN_DSP_CLOCK, "ClockHeartbeat", "The DSP gateway's clock heartbeat."),
        Channel("captured", s.CAPTURED, "CapturedBatch",
                "Alerts captured by hub-capture: parsed, validated, timing points captured."),
        Channel("enriched", s.ENRICHED, "EnrichedBatch",
                "Alerts with the GBCS header decoded and CSP times mapped."),
        Channel("responseSeen", s.RESPONSE_SEEN, "ResponseSeenBatch",
                "GBCS Service Responses seen on the alert interface: counted, not reported as alerts."),
        Channel("expected", f"{s.EXPECTED}.{{partition}}", "ExpectedBatch",
                "Deliveries the DSP makes: one per device alert, one per DCC alert raised.", partition),
        Channel("attempted", f"{s.ATTEMPTED}.{{partition}}", "AttemptedBatch",
                "Delivery log lines, validated.", partition),
        Channel("clock", s.CLOCK, "ClockBatch", "The DSP gateway's clock, read by every metrics partition."),
        Channel("deliver", s.DELIVER, "DeliverNotice",
                "One alert the DSP passes to a Service User (read by the Service User side)."),
        Channel("record", s.RECORD, "AstRecord",
                "The AST log: one delivered alert's timing points and legs; a late fact gives revision n+1."),
        Channel("report15m", s.REPORT_15M, "WindowReport",
                "One 15-minute window (by dsp_received), revision n; a late event gives revision n+1."),
        Channel("rejected", f"{s.REJECTED}.{{stage}}", "RejectedInput",
                "Inputs a stage could not use, kept whole with a machine-readable reason.", stage),
        Channel("deadLetter", f"{s.DEAD_LETTER}.{{stage}}", "DeadLetter",
                "Inputs a stage's consumer gave up on after max_deliver attempts "
                "(from JetStream max-deliveries advisories).", stage),
    ]


#: Who publishes on each channel (receivers come from ``shared.bus.consumer_specs``).
SENDERS: list[tuple[str, str]] = [
    (s.HUB_CAPTURE, "captured"), (s.HUB_CAPTURE, "rejected"),
    (s.CSP_ENRICHMENT, "enriched"), (s.CSP_ENRICHMENT, "responseSeen"), (s.CSP_ENRICHMENT, "rejected"),
    (s.DSP_MAPPING, "deliver"), (s.DSP_MAPPING, "expected"), (s.DSP_MAPPING, "attempted"),
    (s.DSP_MAPPING, "clock"), (s.DSP_MAPPING, "rejected"),
    (s.METRICS, "record"), (s.METRICS, "report15m"), (s.METRICS, "rejected"),
]
#: The parties outside the services.
EXTERNAL: list[tuple[str, str, str, str]] = [
    ("csp-north", "send", "inCspNorth", "CSP North's RNI passes alerts on (bridge or `alert-timing ingest`)"),
    ("csp-central", "send", "inCspCentral", "CSP Central's feed"),
    ("csp-south", "send", "inCspSouth", "CSP South's feed"),
    ("dsp-gateway", "send", "inDspDelivery", "the DSP delivery log"),
    ("dsp-gateway", "send", "inDspClock", "the DSP gateway's clock heartbeat"),
    ("service-users", "receive", "deliver", "the Service User side answers each delivery in the delivery log"),
    ("dsa", "receive", "record", "DS&A / regulator reporting reads the AST log"),
    ("dsa", "receive", "report15m", "DS&A / regulator reporting reads the 15-minute reports"),
]


def _camel(*parts: str) -> str:
    words = [w for p in parts for w in p.replace("-", " ").replace(".", " ").split()]
    return words[0].lower() + "".join(w[:1].upper() + w[1:] for w in words[1:])


def _address_matches(address: str, subject: str) -> bool:
    """Whether a channel address (``{param}`` = one token) covers a subject or filter pattern."""
    pattern = ".".join("*" if t.startswith("{") else t for t in address.split("."))
    got = intersect(pattern, subject)
    return got is not None and (got == subject)


def _clean(schema: Any) -> Any:
    """Tidy msgspec's output for the document: docstrings dedented; OpenAPI's discriminator object
    becomes AsyncAPI's discriminator (the property name)."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key == "description" and isinstance(value, str):
                out[key] = inspect.cleandoc(value)
            elif key == "discriminator" and isinstance(value, dict):
                out[key] = value.get("propertyName")
            else:
                out[key] = _clean(value)
        return out
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


def event_schemas() -> dict[str, dict]:
    """JSON Schemas of the events and contract objects (from the msgspec structs)."""
    from shared import events as ev

    types: list[Any] = [ev.Batch, ev.DeliverNotice, ev.AstRecord, ev.RejectedInput]
    report = getattr(ev, "WindowReport", None)
    if report is not None:
        types.append(report)
    _, components = msgspec.json.schema_components(types, ref_template=SCHEMA_REF)
    components = _clean(components)
    for name, schema in components.items():
        props = schema.get("properties", {})
        for key, prop in props.items():
            if "description" in prop:
                continue
            if key in EVENT_TIME_FIELDS:
                if name == "AstRecord":
                    prop["description"] = "ISO 8601 UTC with milliseconds, null when missing"
                else:
                    prop["description"] = "UTC epoch milliseconds"
            elif key.endswith("_ms") and name == "AstRecord":
                prop["description"] = "milliseconds; negative means clock skew (flagged), null when a point is missing"
            elif key == "v":
                prop["description"] = "schema version"
    if report is None:
        components["WindowReport"] = {"title": "WindowReport", "type": "object",
                                      "description": "15-minute window report (schema not published yet)"}
    for event, envelope in ENVELOPES.values():
        components[envelope] = {
            "title": envelope,
            "description": f"Envelope of {event} events: several events in one message (fewer broker round "
                           f"trips). Each event carries its own `v` and deterministic `event_id`.",
            "type": "object",
            "properties": {
                "v": {"type": "integer", "default": ev.SCHEMA_VERSION, "description": "envelope schema version"},
                "events": {"type": "array", "items": {"$ref": SCHEMA_REF.format(name=event)}},
            },
            "required": ["events"],
        }
    return components


def asyncapi_document() -> dict:
    """The AsyncAPI 3.0 document of every subject of the product (deterministic)."""
    from importlib import metadata

    from shared import bus
    from shared import events as ev
    from shared.settings import DEFAULT_NATS_URL

    try:
        version = metadata.version("alert-timing")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    schemas = {**event_schemas(), **inbound_schemas()}
    ref = SCHEMA_REF.format
    stream_of = {}
    for chan in channels():
        probe = ".".join("x" if t.startswith("{") else t for t in chan.address.split("."))
        stream_of[chan.id] = next((name for name, subs in s.STREAM_SUBJECTS.items()
                                   if any(intersect(probe, sub) == probe for sub in subs)), None)

    def message(name: str, title: str, summary: str, payload: str, *, inbound: bool = False,
                correlation: str | None = None, examples: list | None = None) -> dict:
        msg: dict[str, Any] = {
            "name": name,
            "title": title,
            "summary": summary,
            "contentType": "application/json",
            "payload": {"$ref": ref(name=payload)},
            "headers": {"$ref": ref(name="InboundHeaders" if inbound else "EventHeaders")},
        }
        if not inbound:
            msg["x-schema-version"] = ev.SCHEMA_VERSION
        if correlation:
            msg["correlationId"] = {"location": f"$message.payload#/{correlation}"}
        if examples:
            msg["examples"] = examples
        return msg

    north_example = {"responseId": "R1", "commsHubId": 4000000001, "payload": "3wkDAAAAAAAAAAcI...",
                     "timestamp": "20230601101502.450", "HubTimestamp": "20230601101500.100"}
    feed_example = {"messageId": "C1", "commsHubId": 12, "payload": "3wkDAAAAAAAAAAcI...",
                    "chfReceivedTimestamp": "20230601101500.000", "cspReceivedTimestamp": "20230601101501.800",
                    "cspSentTimestamp": "20230601101502.000"}
    log_example = {"deliveryId": "R1", "responseId": "R1", "dccAlertCode": None,
                   "serviceUserId": "90-B3-D5-1F-30-01-00-00", "suPassedTimestamp": "20230601101502.700",
                   "suAcknowledgedTimestamp": "20230601101503.100", "outcome": "acknowledged"}
    dsp_header = {"Dsp-Received-Timestamp": "20230601101502.500"}
    messages = {
        "CspNorthRni": message("CspNorthRni", "CSP North RNI message", "An alert (or Service Response) from "
                               "CSP North", "CspNorthRniMessage", inbound=True, correlation="responseId",
                               examples=[{"headers": dsp_header, "payload": north_example}]),
        "CspCentralFeed": message("CspCentralFeed", "CSP Central feed message", "An alert from CSP Central",
                                  "CspFeedMessage", inbound=True, correlation="messageId",
                                  examples=[{"headers": dsp_header, "payload": feed_example}]),
        "CspSouthFeed": message("CspSouthFeed", "CSP South feed message", "An alert from CSP South",
                                "CspFeedMessage", inbound=True, correlation="messageId",
                                examples=[{"headers": dsp_header, "payload": feed_example}]),
        "DeliveryLogLine": message("DeliveryLogLine", "DSP delivery log line", "One delivery attempt",
                                   "DeliveryLogLine", inbound=True, correlation="responseId",
                                   examples=[{"payload": log_example}]),
        "ClockHeartbeat": message("ClockHeartbeat", "DSP clock heartbeat", "The DSP gateway's time",
                                  "ClockHeartbeat", inbound=True,
                                  examples=[{"payload": {"time": "20230601103000.000"}}]),
        "DeliverNotice": message("DeliverNotice", "Deliver notice", "One alert passed to a Service User",
                                 "DeliverNotice", correlation="responseId"),
        "AstRecord": message("AstRecord", "AST record", "One delivered alert's timing points and legs",
                             "AstRecord", correlation="response_id"),
        "WindowReport": message("WindowReport", "15-minute report", "Counts and leg distributions of a window",
                                "WindowReport"),
        "RejectedInput": message("RejectedInput", "Rejected input", "An input a stage could not use",
                                 "RejectedInput"),
        "DeadLetter": message("DeadLetter", "Dead letter", "An input a consumer gave up on", "RejectedInput"),
    }
    for event, envelope in ENVELOPES.values():
        messages[envelope] = message(envelope, f"{event} envelope", f"{event} events in a batch envelope",
                                     envelope)

    chans = {c.id: c for c in channels()}
    doc_channels: dict[str, Any] = {}
    for c in chans.values():
        entry: dict[str, Any] = {
            "address": c.address,
            "title": c.address,
            "description": c.description,
            "messages": {c.message: {"$ref": f"#/components/messages/{c.message}"}},
            "x-jetstream-stream": stream_of[c.id],
        }
        if c.parameters:
            entry["parameters"] = c.parameters
        doc_channels[c.id] = entry

    operations: dict[str, Any] = {}

    def operation(actor: str, action: str, channel_id: str, summary: str, extra: dict | None = None) -> None:
        c = chans[channel_id]
        op_id = _camel(actor, action, channel_id)
        operations[op_id] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{c.message}"}],
            "summary": summary,
            "tags": [{"name": actor}],
            **(extra or {}),
        }

    for actor, action, channel_id, summary in EXTERNAL:
        operation(actor, action, channel_id, summary, {"x-external": True})
    for service, channel_id in SENDERS:
        operation(service, "send", channel_id, f"{service} publishes {chans[channel_id].address}")
    for spec in bus.consumer_specs(1):
        for subject in spec.filter_subjects:
            channel_id = next(c.id for c in chans.values() if _address_matches(c.address, subject))
            durable, filters = spec.durable, sorted(spec.filter_subjects)
            consumer: dict[str, Any] = {}
            if spec.service == s.METRICS:  # one durable per partition; documented as partition <p>
                durable = bus.metrics_durable(0).replace("0", "<partition>")
                filters = sorted(f.replace(".0", ".<partition>") for f in filters)
                consumer["note"] = (f"partition 0 also reads {s.RESPONSE_SEEN} and {s.REJECTED}.* "
                                    "(whole-network counts)")
            consumer |= {"stream": spec.stream, "durable": durable, "filterSubjects": filters,
                         "ackPolicy": "explicit", "maxDeliver": spec.max_deliver,
                         "ackWaitSeconds": spec.ack_wait_s, "maxAckPending": spec.max_ack_pending}
            key = _camel(spec.service, "receive", channel_id)
            if key in operations:  # one durable per service input; several subjects may share a channel
                continue
            operation(spec.service, "receive", channel_id,
                      f"{spec.service} consumes {chans[channel_id].address} (durable {durable})",
                      {"x-jetstream-consumer": consumer})

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "alert-timing",
            "version": version,
            "description": (
                "Alert throughput timing for the GB smart-metering network: event-sourced services on NATS "
                "JetStream. Inbound subjects carry the sources' bytes exactly as sent; everything the services "
                "append is JSON (msgspec) carrying `v` (schema version) and a deterministic `event_id` that is "
                "also the `Nats-Msg-Id`. Times inside events are UTC epoch milliseconds; the contract objects "
                "(ast.deliver, ast.record, ast.report.15m) use the formats their readers expect. Generated by "
                "`alert-timing docs` from shared/subjects.py and shared/events.py."),
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": DEFAULT_NATS_URL.split("://", 1)[-1],
                "protocol": "nats",
                "description": "The NATS server with JetStream (`alert-timing up` runs one embedded; "
                               "set NATS_URL for a cluster).",
            },
        },
        "channels": doc_channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
        "x-schema-version": ev.SCHEMA_VERSION,
        "x-jetstream-streams": {name: list(subs) for name, subs in s.STREAM_SUBJECTS.items()},
    }


def render_asyncapi() -> str:
    return json.dumps(asyncapi_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def cmd_docs(args: argparse.Namespace) -> int:
    try:
        text = render_asyncapi()
    except Exception as exc:  # noqa: BLE001 - a schema the generator cannot express
        _note(f"{PROG} docs: cannot build the AsyncAPI document: {type(exc).__name__}: {_describe(exc)}")
        return 2
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.out)
    if args.check:
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            _note(f"{PROG} docs: {path} does not exist: run `{PROG} docs --out {path}`")
            return 1
        except OSError as exc:
            _note(f"{PROG} docs: cannot read {path}: {_describe(exc)}")
            return 2
        if current != text:
            _note(f"{PROG} docs: {path} is out of date: run `{PROG} docs --out {path}`")
            return 1
        print(f"{path} is up to date")
        return 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        _note(f"{PROG} docs: cannot write {path}: {_describe(exc)}")
        return 2
    doc = json.loads(text)
    print(f"wrote {path}: {len(doc['channels'])} channels, {len(doc['operations'])} operations, "
          f"{len(doc['components']['messages'])} messages")
    return 0


# --------------------------------------------------------------------------- parsers


def _nats_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nats-url", help="NATS server URL(s), comma-separated (default: $NATS_URL)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


cmd_tail = _command("tail", _tail, interrupted=0)
cmd_trace = _command("trace", _trace)
cmd_status = _command("status", _status)


def add_parsers(subparsers: Any) -> None:
    """Add ``tail``, ``trace``, ``status`` and ``docs`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "tail", help="follow live events, one readable line each",
        description="Follow the subjects matching SUBJECT_PATTERN (default ast.>) with a core NATS "
                    "subscription: one line per message (per event inside an envelope) with the time, "
                    "subject, ids and key fields. --from-start reads the JetStream history first "
                    "(in stream-time order) and then keeps following. Ctrl-C stops (exit 0).")
    p.add_argument("subject", nargs="?", default=f"{s.PREFIX}.>", metavar="SUBJECT_PATTERN",
                   help="subjects to follow, NATS wildcards allowed (default %(default)s)")
    _nats_arg(p)
    p.add_argument("--json", action="store_true", help="print each message's JSON as it is, one per line")
    p.add_argument("--count", type=_positive, metavar="N", help="stop after N lines")
    p.add_argument("--from-start", action="store_true",
                   help="read the history kept in the streams first, then follow")
    p.set_defaults(func=cmd_tail)

    p = subparsers.add_parser(
        "trace", help="print one alert's journey through every stage",
        description="Read the event log (AST_IN, AST_EVENTS, AST_OUT) and print every event about one "
                    "alert in time order: the inbound message, capture, enrichment, the deliveries "
                    "expected (with the DCC alerts it raised), deliver notices, delivery attempts, AST "
                    "records with their revisions and any rejection mentioning it; then the timing points "
                    "and legs per delivery. DCC alert deliveries are found by their parent's response id. "
                    "Exit 1 when nothing mentions RESPONSE_ID.")
    p.add_argument("response_id", metavar="RESPONSE_ID", help="the alert's responseId (messageId for CSP "
                                                               "Central/South)")
    _nats_arg(p)
    p.add_argument("--json", action="store_true", help="print the journey as one JSON object")
    p.set_defaults(func=cmd_trace)

    p = subparsers.add_parser(
        "status", help="streams, service consumers and rejection counts",
        description="Show each stream (messages, bytes, first/last sequence and time), each service's "
                    "durable consumer (pending, ack pending, redelivered, ack floor, waiting pulls) and "
                    "the rejected and dead-letter counts per stage. Exit 1 when a stream or consumer is "
                    "missing.")
    _nats_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser(
        "docs", help="write the AsyncAPI document of every subject",
        description="Write the AsyncAPI 3.0 document of every subject, its message schema (from "
                    "shared/events.py and the inbound formats), servers, channels and operations. "
                    "--check exits 1 when the file differs from what would be written.")
    p.add_argument("--out", default=str(DEFAULT_DOCS_PATH), metavar="PATH",
                   help="where to write it (default %(default)s; - for stdout)")
    p.add_argument("--check", action="store_true", help="only compare with PATH; exit 1 if it is stale")
    p.set_defaults(func=cmd_docs)


def main(argv: list[str] | None = None) -> int:
    """``python -m services.ops COMMAND ...``: the same commands outside the main CLI."""
    parser = argparse.ArgumentParser(prog=PROG, description="Operations commands of alert-timing.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parsers(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

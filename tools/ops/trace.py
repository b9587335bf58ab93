"""trace: one alert's journey through every stage."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from alert_timing.ops.common import (
    OpsError,
    close,
    connect,
    deliver_summary,
    direct_stored_ms,
    event_summary,
    iso_or_dash,
    json_decoder,
    load_settings,
    record_summary,
    rejection_summary,
    shorten,
    stored_ms,
)
from shared import subjects as s
from shared.eventlog import direct_place, messages_between, messages_on_subject, scan_messages, sequence_at_time
from shared.events import LEG_SPANS, IndexEntry
from shared.settings import Settings
from shared.timefmt import format_iso

#: What a trace reads: every subject that can mention an alert (not clock ticks or reports).
TRACE_FILTERS: dict[str, list[str]] = {
    s.STREAM_IN: [s.IN_CSP_NORTH, s.IN_CSP_CENTRAL, s.IN_CSP_SOUTH, s.IN_DSP_DELIVERY],
    s.STREAM_EVENTS: [s.CAPTURED, s.ENRICHED, s.RESPONSE_SEEN, f"{s.EXPECTED}.*", f"{s.ATTEMPTED}.*",
                      s.DELIVER, f"{s.REJECTED}.*", f"{s.DEAD_LETTER}.*"],
    s.STREAM_OUT: [s.RECORD],
}
STREAM_ORDER = {name: i for i, name in enumerate(s.STREAM_SUBJECTS)}
index_decoder = msgspec.json.Decoder(IndexEntry)


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

    def steps(self, stream: str, msg: Msg) -> list[Step]:
        if not self.candidate(msg.subject, msg.data):
            return []
        return self.steps_of(stream, msg.subject, msg.data, msg.metadata.sequence.stream, stored_ms(msg))

    def steps_of(self, stream: str, subject: str, data: bytes, seq: int, when: int) -> list[Step]:
        """The journey's steps in one stored message (subject, bytes, where and when stored)."""
        if not self.candidate(subject, data):
            return []

        def step(kind: str, obj: dict, index: int = 0) -> Step:
            return Step(when, stream, seq, subject, kind, obj, index)

        rid = self.response_id
        try:
            obj = json_decoder.decode(data)
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
    indexed: bool = False  # read through the trace index (scanned: messages read by sequence)
    #: The bounded scan that filled in points the index did not name: from, to (store times,
    #: epoch ms) and the messages read per stream.
    filled: dict | None = None
    #: Points the journey must have (``required_points``) that neither the index nor the
    #: bounded scan found.
    not_found: list[Point] = field(default_factory=list)

    def add(self, steps: Iterable[Step]) -> None:
        """Add steps not already held (the same message and event), keeping time order."""
        held = {(st.stream, st.seq, st.index) for st in self.steps}
        self.steps.extend(st for st in steps if (st.stream, st.seq, st.index) not in held)
        self.steps.sort(key=Step.sort_key)


# --------------------------------------------------------------------------- the points a journey must have


@dataclass(frozen=True)
class Point:
    """One point of an alert's journey: ``what`` (a stage's message), for which delivery, and
    for delivery attempts the outcome the record says there was (None: any)."""

    what: str
    delivery_id: str | None = None
    outcome: str | None = None

    def label(self) -> str:
        text = self.what if self.outcome is None else f"{self.what} ({self.outcome})"
        return text if self.delivery_id is None else f"{text} of {self.delivery_id}"


#: Where each point is stored: stream and subjects (what a bounded scan reads to find it).
POINT_SUBJECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "input": (s.STREAM_IN, tuple(s.IN_CSP)),
    "captured": (s.STREAM_EVENTS, (s.CAPTURED,)),
    "enriched": (s.STREAM_EVENTS, (s.ENRICHED, s.RESPONSE_SEEN)),
    "delivery_expected": (s.STREAM_EVENTS, (f"{s.EXPECTED}.*",)),
    "deliver": (s.STREAM_EVENTS, (s.DELIVER,)),
    "delivery_log": (s.STREAM_IN, (s.IN_DSP_DELIVERY,)),
    "delivery_attempted": (s.STREAM_EVENTS, (f"{s.ATTEMPTED}.*",)),
    "record": (s.STREAM_OUT, (s.RECORD,)),
}


POINT_ORDER = {what: i for i, what in enumerate(POINT_SUBJECTS)}


def points_of(steps: Iterable[Step]) -> set[Point]:
    """The points the steps show."""
    have: set[Point] = set()
    for st in steps:
        data = st.data
        if st.kind in ("inbound", "inbound_unreadable"):
            have.add(Point("input"))
        elif st.subject == s.CAPTURED:
            have.add(Point("captured"))
        elif st.subject in (s.ENRICHED, s.RESPONSE_SEEN):
            have.add(Point("enriched"))
            if st.kind == "service_response_seen":
                have.add(Point("service_response_seen"))
        if st.kind == "rejected_input":
            have.add(Point("rejected_input"))
        elif st.kind == "delivery_expected":
            have.add(Point("delivery_expected", data.get("delivery_id")))
        elif st.kind == "deliver":
            have.add(Point("deliver", data.get("deliveryId")))
        elif st.kind == "delivery_log":
            have.add(Point("delivery_log", data.get("deliveryId")))
        elif st.kind == "delivery_attempted":
            did = data.get("delivery_id")
            have |= {Point("delivery_attempted", did), Point("delivery_attempted", did, data.get("outcome"))}
        elif st.kind == "record":
            have.add(Point("record", data.get("delivery_id")))
    return have


def required_points(steps: Iterable[Step]) -> set[Point]:
    """The points a journey with these steps must have, from what they say: every alert has
    its input, capture and enrichment (a rejected input ends at its rejection, a Service
    Response at enrichment); an alert at least one expected delivery; each delivery its
    expectation, deliver notice and record; and from its latest record: an acknowledged
    attempt (complete, incomplete), a throttled one (throttled), any attempt when the record
    counts delivery attempts (no_handshake) - each attempt a delivery-log line and its event."""
    steps = list(steps)
    have = points_of(steps)
    need = {Point("input")}
    if Point("rejected_input") in have:
        return need
    need |= {Point("captured"), Point("enriched")}
    if Point("service_response_seen") in have:
        return need
    deliveries = {p.delivery_id for p in have if p.delivery_id is not None}
    if not deliveries:
        need.add(Point("delivery_expected"))
        return need
    latest: dict[object, dict] = {}
    for st in steps:
        if st.kind == "record":
            did = st.data.get("delivery_id")
            if did not in latest or (st.data.get("revision") or 0) > (latest[did].get("revision") or 0):
                latest[did] = st.data
    for did in deliveries:
        need |= {Point("delivery_expected", did), Point("deliver", did), Point("record", did)}
        record = latest.get(did, {})
        status = record.get("status")
        outcome = {"complete": "acknowledged", "incomplete": "acknowledged", "throttled": "throttled"}.get(
            str(status))
        attempted = (outcome is not None or (record.get("delivery_attempts") or 0) > 0
                     or Point("delivery_log", did) in have or Point("delivery_attempted", did) in have)
        if attempted:
            need |= {Point("delivery_log", did), Point("delivery_attempted", did)}
        if outcome is not None:
            need.add(Point("delivery_attempted", did, outcome))
    return need


def missing_points(steps: Iterable[Step]) -> list[Point]:
    """The required points the steps do not show (a point without a delivery is met by any)."""
    steps = list(steps)
    have = points_of(steps)
    whats = {p.what for p in have}
    return sorted((p for p in required_points(steps) - have if p.delivery_id is not None or p.what not in whats),
                  key=lambda p: (POINT_ORDER.get(p.what, 9), p.delivery_id or "", p.outcome or ""))


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


async def index_entries(nc: Client, response_id: str) -> list[IndexEntry]:
    """The trace index entries of an alert, oldest first: its bucket's entries (batched direct
    gets), those that name it (or name nobody: entries from before they did)."""
    entries: list[IndexEntry] = []
    for msg in await messages_on_subject(nc, s.STREAM_INDEX, s.index_subject(response_id)):
        try:
            entry = index_decoder.decode(msg.data or b"")
        except msgspec.DecodeError:
            continue
        if entry.response_id in (None, response_id):
            entries.append(entry)
    return entries


async def find_journey_indexed(nc: Client, wanted: str) -> Journey | None:
    """The journey from the trace index: the messages it names, read by sequence. ``wanted`` is
    a response id or a delivery id (``<responseId>:<code>:<n>`` is looked up by its response
    id). None when the index has nothing for it (or there is no index)."""
    from nats.js.errors import NotFoundError

    js = nc.jetstream(timeout=10)
    started = time.perf_counter()
    try:
        await js.stream_info(s.STREAM_INDEX)
    except NotFoundError:
        return None
    candidates = [wanted] + ([wanted.split(":", 1)[0]] if ":" in wanted else [])
    for response_id in candidates:
        entries = await index_entries(nc, response_id)
        if entries:
            break
    else:
        return None
    where = sorted({(stream, seq) for e in entries for stream, seq in e.at})
    journey = Journey(response_id)
    matcher = Matcher(response_id)

    async def read(stream: str, seq: int) -> None:
        try:
            msg = await js.get_msg(stream, seq=seq, direct=True)
        except NotFoundError:  # past the stream's limits
            journey.missing_streams.append(f"{stream}#{seq}")
            return
        when = direct_stored_ms(msg)
        journey.steps.extend(matcher.steps_of(stream, msg.subject or "", msg.data or b"", seq, when))

    await asyncio.gather(*(read(stream, seq) for stream, seq in where))
    journey.steps.sort(key=Step.sort_key)
    journey.scanned = {"index": len(where)}
    journey.indexed = True
    journey.seconds = time.perf_counter() - started
    return journey


def scan_window_s(settings: Settings) -> float:
    """How long after an alert's input its points may still be stored: the lateness a delivery
    log line may have, the handshake timeout after which its record is issued, the window it
    closes with and the quiet time after which the wall clock closes it."""
    from services.metrics.core import MetricsConfig

    return (settings.allowed_lateness_s + settings.handshake_timeout_s + MetricsConfig().window_ms / 1000
            + settings.idle_close_after_s)


async def input_store_ms(nc: Client, journey: Journey, matcher: Matcher) -> int | None:
    """When the alert's input was stored: its own step, or the input a capture (or a
    rejection) names by sequence, read and added to the journey."""
    from nats.js.errors import NotFoundError

    inputs = [st.time_ms for st in journey.steps if st.kind in ("inbound", "inbound_unreadable")]
    if inputs:
        return min(inputs)
    js = nc.jetstream(timeout=10)
    for st in journey.steps:
        seq = st.data.get("source_seq")
        if st.subject not in (s.CAPTURED, *(s.rejected(stage) for stage in s.SERVICES)) or not isinstance(seq, int):
            continue
        try:
            msg = await js.get_msg(s.STREAM_IN, seq=seq, direct=True)
        except NotFoundError:
            continue
        when = direct_stored_ms(msg)
        journey.add(matcher.steps_of(s.STREAM_IN, msg.subject or "", msg.data or b"", seq, when))
        return when
    return None


#: The points read forward from the one before them (oldest first): each stage stores its
#: output after it read its input, so the output is after the input's store time, usually
#: a few messages on. Per point, the points whose messages bound it from below, best first.
FORWARD_FROM: dict[str, tuple[str, ...]] = {
    "captured": ("input",),
    "enriched": ("captured",),
    "delivery_expected": ("enriched",),
    "deliver": ("delivery_expected", "enriched"),
    "delivery_log": ("deliver", "delivery_expected"),
    "delivery_attempted": ("delivery_log", "deliver", "delivery_expected"),
    "record": ("delivery_attempted", "delivery_expected"),
}
#: Messages per batched direct get of a forward read (envelopes are up to 256 events each).
FORWARD_BATCH = 64


def what_of(step: Step) -> str | None:
    """The point a step is (its ``what``), or None."""
    if step.kind in ("inbound", "inbound_unreadable"):
        return "input"
    if step.subject == s.CAPTURED:
        return "captured"
    if step.subject in (s.ENRICHED, s.RESPONSE_SEEN):
        return "enriched"
    if step.kind in ("delivery_expected", "deliver", "delivery_log", "delivery_attempted", "record"):
        return step.kind
    return None


async def follow_positions(nc: Client, journey: Journey, matcher: Matcher) -> int:
    """Read the messages the journey's events name by position (an attempt's delivery-log
    line) that it does not hold yet. How many were read."""
    from nats.js.errors import NotFoundError

    held = {(st.stream, st.seq) for st in journey.steps}
    wanted = sorted({seq for st in journey.steps if st.kind == "delivery_attempted"
                     and isinstance(seq := st.data.get("source_seq"), int) and (s.STREAM_IN, seq) not in held})
    js = nc.jetstream(timeout=10)

    async def read(seq: int) -> None:
        try:
            msg = await js.get_msg(s.STREAM_IN, seq=seq, direct=True)
        except NotFoundError:  # past the stream's limits, or deleted
            return
        when = direct_stored_ms(msg)
        journey.add(matcher.steps_of(s.STREAM_IN, msg.subject or "", msg.data or b"", seq, when))

    await asyncio.gather(*(read(seq) for seq in wanted))
    return len(wanted)


async def fill_in(nc: Client, journey: Journey, window_s: float) -> None:
    """Points the index does not name (the index names the input and the record; an entry may
    also be lost, purged or never written), read by sequence: the positions the events carry,
    then each missing point read forward from the point before it (``FORWARD_FROM``: from its
    sequence, or the first sequence stored after it in another stream) on its own subjects,
    stopping as soon as it is found; a point with no point before it is looked for in a
    bounded scan of the streams that hold it. Nothing is read past ``window_s`` after the
    input's store time. Without the input, the window is ``window_s`` either side of the
    earliest message found."""
    matcher = Matcher(journey.response_id)
    missing = missing_points(journey.steps)
    if not missing or not journey.steps:
        journey.not_found = missing
        return
    started = time.perf_counter()
    read: dict[str, int] = {}
    followed = await follow_positions(nc, journey, matcher)
    if followed:
        read[s.STREAM_IN] = followed
    start_ms = await input_store_ms(nc, journey, matcher)
    window_ms = int(window_s * 1000)
    if start_ms is None:
        start_ms = min(st.time_ms for st in journey.steps) - window_ms
        end_ms = start_ms + 2 * window_ms
    else:
        end_ms = start_ms + window_ms
    ends: dict[str, int | None] = {}

    async def last_seq(stream: str) -> int | None:
        if stream not in ends:
            after = await sequence_at_time(nc, stream, end_ms + 1)
            ends[stream] = None if after is None else after - 1
        return ends[stream]

    def missing_whats() -> set[str]:
        return {p.what for p in missing_points(journey.steps)}

    async def forward(what: str, stream: str, first: int) -> None:
        """Read ``what``'s subjects from ``first`` until it is no longer missing (or the window ends)."""
        last = await last_seq(stream)
        for subject in POINT_SUBJECTS[what][1]:
            async for batch in messages_between(nc, stream, subject, first, last, FORWARD_BATCH):
                read[stream] = read.get(stream, 0) + len(batch)
                for msg in batch:
                    subj, seq, when = direct_place(msg)
                    journey.add(matcher.steps_of(stream, subj, msg.data or b"", seq, when))
                if what not in missing_whats():
                    return

    searched: set[str] = set()
    for what, before in FORWARD_FROM.items():
        if what not in missing_whats():
            continue
        stream = POINT_SUBJECTS[what][0]
        bounds = [st for st in journey.steps if what_of(st) in before]
        if not bounds:
            continue
        # the earliest message of the best point before it
        rank = {w: i for i, w in enumerate(before)}
        best = min(bounds, key=lambda st: (rank[what_of(st) or ""], st.time_ms, st.seq))
        if best.stream == stream:
            first: int | None = best.seq + 1
        else:
            first = await sequence_at_time(nc, stream, best.time_ms)
        searched.add(what)
        if first is not None:
            await forward(what, stream, first)
    missing = [p for p in missing_points(journey.steps) if p.what not in searched]
    wanted: dict[str, set[str]] = {}
    for p in missing:
        stream, subjects = POINT_SUBJECTS[p.what]
        wanted.setdefault(stream, set()).update(subjects)

    async def scan(stream: str, subjects: set[str]) -> None:
        first = await sequence_at_time(nc, stream, start_ms)
        if first is None:
            read.setdefault(stream, 0)
            return
        last = await last_seq(stream)
        count = 0
        for subject in sorted(subjects):
            async for batch in messages_between(nc, stream, subject, first, last):
                count += len(batch)
                for msg in batch:
                    subj, seq, when = direct_place(msg)
                    journey.add(matcher.steps_of(stream, subj, msg.data or b"", seq, when))
        read[stream] = read.get(stream, 0) + count

    await asyncio.gather(*(scan(stream, subjects) for stream, subjects in wanted.items()))
    journey.filled = {"from": start_ms, "to": end_ms, "read": {k: read[k] for k in sorted(read)},
                      "seconds": round(time.perf_counter() - started, 3)}
    journey.seconds += time.perf_counter() - started
    journey.not_found = missing_points(journey.steps)


async def find_journey(nc: Client, response_id: str) -> Journey:
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
    journey.not_found = missing_points(journey.steps)
    return journey


def _first(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return min(present) if present else None


def _minus(a: int | None, b: int | None) -> int | None:
    return a - b if a is not None and b is not None else None


def delivery_summaries(journey: Journey) -> list[dict]:
    """Per delivery: timing points and legs from the events, the attempts, the records."""
    expected: dict[str | None, dict] = {}  # an event without its delivery id under None
    attempts: dict[str | None, list[dict]] = {}
    records: dict[str | None, list[dict]] = {}
    notices: dict[str | None, dict] = {}
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
        legs = {leg.name: _minus(points[leg.end], points[leg.start]) for leg in LEG_SPANS}
        throttled = any(a.get("outcome") == "throttled" for a in tries)
        if throttled:  # discarded by storm protection: never passed, whatever else was logged
            points["su_passed"] = points["su_acknowledged"] = None
            legs["dsp_to_su"] = legs["su_handshake"] = legs["end_to_end"] = None
        if not exp:
            status = "delivery_without_alert"
        elif throttled:
            status = "throttled"
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
        "indexed": journey.indexed,
        "filled_in": None if journey.filled is None else {
            "from": format_iso(journey.filled["from"]), "to": format_iso(journey.filled["to"]),
            "read": journey.filled["read"], "seconds": journey.filled["seconds"]},
        "not_found": [p.label() for p in journey.not_found],
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
    if journey.indexed:
        how = f"{total:,} messages read through the trace index in {journey.seconds:.2f} s"
    else:
        how = f"{total:,} messages of {', '.join(journey.scanned) or 'no stream'} scanned in {journey.seconds:.1f} s"
    lines = [f"alert {journey.response_id}: {len(journey.steps)} events ({how})"]
    if journey.filled is not None:
        f = journey.filled
        read = ", ".join(f"{n:,} of {stream}" for stream, n in f["read"].items()) or "nothing"
        lines.append(f"not all in the index: read {read} stored {format_iso(f['from'])} .. "
                     f"{format_iso(f['to'])} in {f['seconds']:.2f} s")
    if journey.not_found:
        lines.append("not found: " + ", ".join(p.label() for p in journey.not_found))
    if journey.missing_streams:
        lines.append(f"missing streams: {', '.join(journey.missing_streams)}")
    lines.append("")
    width = max((len(f"{st.stream}#{st.seq}") for st in journey.steps), default=10)
    subj_width = max((len(st.subject) for st in journey.steps), default=10)
    for st in journey.steps:
        where = f"{st.stream}#{st.seq}"
        lines.append(f"{iso_or_dash(st.time_ms)}  {where:<{width}}  {st.subject:<{subj_width}}  {_step_text(st)}")
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
            rec_legs = "  ".join(f"{leg.name} {'-' if r.get(leg.field) is None else r.get(leg.field)}"
                                 for leg in LEG_SPANS)
            same = all(r.get(leg.field) == d["legs_ms"][leg.name] for leg in LEG_SPANS)
            lines.append(f"  {'record rev ' + str(r.get('revision')):<18}{r.get('status')}  {rec_legs}"
                         + ("" if same else "  (differs from the events)"))
        if not d["records"]:
            lines.append(f"  {'record':<18}none yet")
    rejected = [st for st in journey.steps if st.kind == "rejected_input"]
    if rejected:
        lines += ["", f"rejections: {len(rejected)}"]
    return "\n".join(lines)


async def trace_command(args: argparse.Namespace) -> int:
    response_id = args.response_id.strip()
    if not response_id:
        raise OpsError("RESPONSE_ID must not be empty")
    settings = load_settings(args)
    nc = await connect(settings, "trace")
    try:
        journey = None if args.scan else await find_journey_indexed(nc, response_id)
        if journey is not None:
            window = args.window if args.window is not None else scan_window_s(settings)
            await fill_in(nc, journey, window)
        if journey is None:
            # Not in the index: an input too malformed to name its alert, or history from
            # before the index. Reading the whole log takes time in proportion to it.
            if not args.scan and sys.stderr.isatty():
                print(f"{response_id} is not in the trace index; scanning the event log", file=sys.stderr)
            journey = await find_journey(nc, response_id)
    finally:
        await close(nc)
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


"""Schema evolution: the log is read through the upcasters of ``shared.upcasting``.

``tests/fixtures/events/<type>.v<N>.json`` are messages as the services wrote them at version N,
frozen (written once, never rewritten: a schema change adds a file, and an upcaster that reads
the old ones). Each must still decode, through the path the services and the rebuild use, to
the event below."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from services.runtime.envelopes import decode_events, events_of
from services.runtime.service import Emitter, Inbound
from shared import subjects as s
from shared.events import (
    AlertCaptured,
    AlertEnriched,
    AnyEvent,
    Batch,
    ClockTick,
    DeliveryAttempted,
    DeliveryExpected,
    OutageNotified,
    RejectedInput,
    ServiceResponseSeen,
    WallClock,
    encoder,
)
from shared.upcasting import CURRENT, EventReader, UnknownSchemaVersion

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "events"
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

#: What each fixture reads as today.
EXPECTED: dict[str, AnyEvent] = {
    "alert_captured.v1": AlertCaptured(
        event_id="cap:ast.in.csp-central:17", response_id="C0000017", region="central",
        comms_hub_id=4711, payload="3wkAAAAAAAAAAQ==", chf_received=1_700_000_000_000,
        csp_received=1_700_000_000_450, csp_sent=1_700_000_000_900, dsp_received=1_700_000_001_200,
        dsp_received_source="header", source_seq=17, extra={"serviceReferenceVariant": "8.1"}, trace=TRACE),
    "alert_enriched.v1": AlertEnriched(
        event_id="enr:C0000017", response_id="C0000017", region="central", comms_hub_id=4711,
        message_code="0x0082", alert_code="8F3F", originator="00-DB-12-34-56-78-9A-BC",
        recipient="90-B3-D5-1F-30-01-00-00", device_alert_time=1_699_999_999_000,
        chf_received=1_700_000_000_000, csp_received=1_700_000_000_450, csp_sent=1_700_000_000_900,
        dsp_received=1_700_000_001_200, flags=("clock_skew",), trace=TRACE),
    "outage_notified.v1": OutageNotified(
        event_id="cap:ast.in.csp-south:3", response_id="S-OUT-3", region="south", comms_hub_id=99,
        outage_duration_s=240, chf_received=None, csp_received=1_700_000_100_000, csp_sent=1_700_000_100_300,
        dsp_received=1_700_000_100_800, dsp_received_source="stream", source_seq=3, extra={}, trace=None),
    "service_response_seen.v1": ServiceResponseSeen(
        event_id="srs:N0000005", response_id="N0000005", region="north", cra_flag="0x02",
        message_code="0x0031", dsp_received=1_700_000_002_000),
    "delivery_expected.v1": DeliveryExpected(
        event_id="exp:C0000017:supplier-1", delivery_id="C0000017:supplier-1", response_id="C0000017",
        region="central", comms_hub_id=4711, category="device_alert", alert_code="8F3F", dcc_alert_code=None,
        message_code="0x0082", originator="00-DB-12-34-56-78-9A-BC", recipient="90-B3-D5-1F-30-01-00-00",
        service_user_id="supplier-1", device_alert_time=1_699_999_999_000, chf_received=1_700_000_000_000,
        csp_received=1_700_000_000_450, csp_sent=1_700_000_000_900, dsp_received=1_700_000_001_200,
        flags=("clock_skew",), trace=TRACE),
    "delivery_attempted.v1": DeliveryAttempted(
        event_id="att:C0000017:supplier-1:1", delivery_id="C0000017:supplier-1", response_id="C0000017",
        dcc_alert_code=None, service_user_id="supplier-1", su_passed=1_700_000_001_260,
        su_acknowledged=1_700_000_001_400, outcome="acknowledged", throttled_count=2),
    "clock_tick.v1": ClockTick(event_id="tick:1700000005000", time=1_700_000_005_000),
    "wall_clock.v1": WallClock(event_id="wall:0:1700000905000", partition=0, alert_clock=1_700_000_905_000,
                               log_clock=1_700_000_900_000),
    "rejected_input.v1": RejectedInput(
        event_id="rej:hub-capture:ast.in.csp-north:8", stage="hub-capture", reason="bad_json",
        message="not JSON: unexpected character", subject="ast.in.csp-north",
        headers={"Nats-Msg-Id": "north-8"}, raw=b"{not json\xff", source_seq=8, dsp_received=1_700_000_003_000),
}

#: A subject each kind of message is read from (rejections alone, everything else in envelopes).
REJECTED_SUBJECT = s.rejected(s.HUB_CAPTURE)
BATCH_SUBJECT = s.CAPTURED


def subject_of(kind: str) -> str:
    return REJECTED_SUBJECT if kind == "rejected_input" else BATCH_SUBJECT


def wire(event: AnyEvent) -> bytes:
    """A message body as the services write it (used once, to write the fixtures)."""
    if isinstance(event, RejectedInput):
        return encoder.encode(event)
    return encoder.encode(Batch(events=[event]))


def fixture_names() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in FIXTURES.glob("*.json"))


def test_every_event_type_has_a_fixture_at_its_current_version() -> None:
    names = fixture_names()
    assert {f"{kind}.v{version}" for kind, version in CURRENT.items()} <= set(names)
    assert set(names) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_frozen_fixture_reads_as_todays_event(name: str) -> None:
    kind, version = name.rsplit(".v", 1)
    data = (FIXTURES / f"{name}.json").read_bytes()
    plain = msgspec.json.decode(data)
    written = plain if kind == "rejected_input" else plain["events"][0]
    assert (written["type"], written["v"]) == (kind, int(version))  # the file is what its name says
    assert decode_events(subject_of(kind), data) == [EXPECTED[name]]


# --------------------------------------------------------------------------- older and newer versions

#: An imagined first version of clock_tick: the time was called ``at`` and was in seconds.
CLOCK_TICK_V0 = b'{"v":1,"events":[{"type":"clock_tick","v":0,"event_id":"tick:1700000005","at":1700000005}]}'


def tick_v0_to_v1(event: dict) -> dict:
    out = {k: v for k, v in event.items() if k != "at"}
    out["time"] = event["at"] * 1000
    return out


def test_an_older_version_is_upcast() -> None:
    reader = EventReader(upcasters={("clock_tick", 0): tick_v0_to_v1}, current=CURRENT)
    assert reader.batch(CLOCK_TICK_V0) == [ClockTick(event_id="tick:1700000005", time=1_700_000_005_000)]
    mixed = CLOCK_TICK_V0.replace(b"]}", b"," + encoder.encode(EXPECTED["wall_clock.v1"]) + b"]}")
    assert reader.batch(mixed) == [ClockTick(event_id="tick:1700000005", time=1_700_000_005_000),
                                   EXPECTED["wall_clock.v1"]]


def test_an_older_version_without_its_upcaster_is_refused() -> None:
    with pytest.raises(UnknownSchemaVersion, match="clock_tick schema version 0: no upcaster"):
        EventReader(upcasters={}, current=CURRENT).batch(CLOCK_TICK_V0)


def test_an_upcaster_for_the_current_version_or_an_unknown_type_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="clock_tick"):
        EventReader(upcasters={("clock_tick", CURRENT["clock_tick"]): tick_v0_to_v1})
    with pytest.raises(ValueError, match="no_such_event"):
        EventReader(upcasters={("no_such_event", 0): tick_v0_to_v1})


def inbound(subject: str, data: bytes, seq: int = 41) -> Inbound:
    return Inbound(subject=subject, data=data, headers={}, stream_seq=seq, stream_time_ms=1_700_000_009_000)


def test_a_future_version_is_rejected_like_any_unreadable_envelope() -> None:
    future = (FIXTURES / "delivery_attempted.v1.json").read_bytes().replace(b'"v":1,"event_id"', b'"v":7,"event_id"')
    assert future != (FIXTURES / "delivery_attempted.v1.json").read_bytes()
    readable = wire(EXPECTED["clock_tick.v1"])
    out = Emitter()
    got = list(events_of([inbound(s.ATTEMPTED + ".0", future), inbound(BATCH_SUBJECT, readable, 42)],
                         s.METRICS, out))
    assert [event for _, event in got] == [EXPECTED["clock_tick.v1"]]
    [rejection] = out.singles
    assert rejection.subject == s.rejected(s.METRICS)
    event = msgspec.json.decode(rejection.payload, type=RejectedInput)
    assert event.reason == "bad_event" and event.raw == future
    assert "delivery_attempted schema version 7: newer than this build reads (up to 1)" in event.message


def test_a_future_batch_envelope_is_refused() -> None:
    data = wire(EXPECTED["clock_tick.v1"]).replace(b'{"v":1,"events"', b'{"v":2,"events"')
    with pytest.raises(UnknownSchemaVersion, match="batch envelope version 2"):
        decode_events(BATCH_SUBJECT, data)


def test_a_future_rejection_is_refused() -> None:
    data = (FIXTURES / "rejected_input.v1.json").read_bytes().replace(b'"v":1,', b'"v":3,')
    with pytest.raises(UnknownSchemaVersion, match="rejected_input schema version 3: newer"):
        decode_events(REJECTED_SUBJECT, data)


def test_an_unreadable_envelope_keeps_the_typed_decoders_reason() -> None:
    data = wire(EXPECTED["clock_tick.v1"]).replace(b'"time":1700000005000', b'"time":"soon"')
    with pytest.raises(msgspec.DecodeError, match=r"Expected `int`, got `str` - at `\$.events\[0\].time`"):
        decode_events(BATCH_SUBJECT, data)

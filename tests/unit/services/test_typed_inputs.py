"""The typed reading of inputs (one msgspec decode into a Struct) gives the same event as the
field-by-field reading, for good inputs and for any mix of odd field values; and good inputs
take the typed path."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from alert_timing.simulator.traffic import TrafficConfig, generate, service_user_answers
from services.dsp_mapping.core import checked_attempt, clock_tick, delivery_attempt
from services.hub_capture.core import capture, checked_capture
from services.runtime.service import Inbound
from shared import subjects as s
from shared.csp_notifications import PowerOutageShape
from shared.dcc_rules import RuleTable
from shared.events import AlertCaptured, ClockTick, DeliveryAttempted
from shared.settings import Settings
from tests.harness.rejections import DSP, OK_F, OK_L, OK_N, OK_O

SETTINGS = Settings()
RULES = RuleTable.from_toml('schema_version = 1\ndefault_service_user = "90-B3-D5-1F-30-01-00-00"\n'
                            '[default]\ndcc_alerts = []\n[device_alerts.8F3F]\ndcc_alerts = ["N39", "N54"]\n')


def _msg(subject: str, data: bytes, headers: dict[str, str] | None = None, seq: int = 3) -> Inbound:
    return Inbound(subject, data, dict(headers or {}), seq, 1_700_000_000_000)


def test_the_simulators_traffic_reads_the_same_both_ways_and_mostly_typed():
    traffic = generate(TrafficConfig(alerts=400, seed=3), RULES, PowerOutageShape())
    typed = 0
    for n, i in enumerate(traffic.inputs):
        msg = _msg(i.subject, i.data, i.headers, n + 1)
        assert capture(msg, SETTINGS) == checked_capture(msg, SETTINGS)
        typed += b'"rniVersion"' not in i.data and isinstance(capture(msg, SETTINGS), AlertCaptured)
        for d in i.deliveries:
            for line in service_user_answers(d, i.response_id, None, "90-B3-D5-1F-30-01-00-00",
                                             i.dsp_received, 3):
                log = _msg(s.IN_DSP_DELIVERY, line.data)
                assert delivery_attempt(log, SETTINGS) == checked_attempt(log, SETTINGS)
                assert isinstance(delivery_attempt(log, SETTINGS), DeliveryAttempted)
    assert typed > len(traffic.inputs) // 2


# Odd values a field may hold: each is either fine or refused, the same way by both readers.
ODD = st.one_of(
    st.just(...), st.none(), st.booleans(), st.integers(-3, 2**33), st.floats(allow_nan=False), st.text(max_size=3),
    st.sampled_from(["", "x" * 129, "x" * 161, "AAEC", "AAE", "not*base64!", "20230601101502.450",
                     "20230229101502.450", "20230601101502", "２0230601101502.450", "acknowledged", "failed",
                     "throttled", "N39", "N99", "powerOutage"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


def _mutated(base: dict, changes: dict) -> bytes:
    body = dict(base)
    for name, value in changes.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return msgspec.json.encode(body)


def _changes(base: dict) -> st.SearchStrategy[dict]:
    return st.dictionaries(st.sampled_from([*base, "extra", "notificationType"]), ODD, max_size=3)


@given(st.sampled_from([(s.IN_CSP_NORTH, OK_N), (s.IN_CSP_CENTRAL, OK_F), (s.IN_CSP_SOUTH, OK_F),
                        (s.IN_CSP_CENTRAL, OK_O), (s.IN_CSP_NORTH, OK_F)]).flatmap(
    lambda sb: st.tuples(st.just(sb), _changes(sb[1]))),
    st.sampled_from([DSP, {}, {"Dsp-Received-Timestamp": "bad"}, {"traceparent": "00-ab-cd-01"}]))
def test_capture_typed_equals_checked(case, headers):
    (subject, base), changes = case
    msg = _msg(subject, _mutated(base, changes), headers)
    assert capture(msg, SETTINGS) == checked_capture(msg, SETTINGS)


@given(_changes(OK_L))
def test_delivery_attempt_typed_equals_checked(changes):
    msg = _msg(s.IN_DSP_DELIVERY, _mutated(OK_L, changes))
    assert delivery_attempt(msg, SETTINGS) == checked_attempt(msg, SETTINGS)


def test_good_inputs_take_the_typed_path():
    """The typed path builds the event without the field checks: an input the field checks
    would keep (a North alert with an extra field) is not typed, a plain one is."""
    from services.dsp_mapping.core import _typed_attempt
    from services.hub_capture.core import _typed

    assert isinstance(_typed(_msg(s.IN_CSP_NORTH, msgspec.json.encode(OK_N), DSP), "north", SETTINGS,
                             PowerOutageShape()), AlertCaptured)
    assert isinstance(_typed(_msg(s.IN_CSP_SOUTH, msgspec.json.encode(OK_F), DSP), "south", SETTINGS,
                             PowerOutageShape()), AlertCaptured)
    assert _typed(_msg(s.IN_CSP_NORTH, _mutated(OK_N, {"rniVersion": "4.2"}), DSP), "north", SETTINGS,
                  PowerOutageShape()) is None
    assert _typed(_msg(s.IN_CSP_CENTRAL, msgspec.json.encode(OK_O), DSP), "central", SETTINGS,
                  PowerOutageShape()) is None
    assert isinstance(_typed_attempt(_msg(s.IN_DSP_DELIVERY, msgspec.json.encode(OK_L)), frozenset({"N39"})),
                      DeliveryAttempted)


def test_clock_tick_typed():
    assert clock_tick(_msg(s.IN_DSP_CLOCK, b'{"time": "20230601101502.700"}'), SETTINGS) == ClockTick(
        event_id="clock:1685614502700", time=1_685_614_502_700)

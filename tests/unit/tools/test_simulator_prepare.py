"""The simulator's traffic prepared before a run: each input its own message with its headers
and ``Nats-Msg-Id``, and each delivery's answers the same as the Service User side would build
from the notice dsp-mapping sends for it."""

from __future__ import annotations

from alert_timing.simulator.traffic import TrafficConfig, generate, input_msg_id, prepare, service_user_answers
from services.csp_enrichment.core import enrich, pass_on
from services.dsp_mapping.core import deliveries, notice, outage_deliveries
from services.hub_capture.core import capture
from services.runtime.service import Inbound
from shared.csp_notifications import load as load_notifications
from shared.dcc_rules import RuleTable
from shared.events import AlertCaptured, AlertEnriched, DeliverNotice, OutageNotified
from shared.settings import Settings

SETTINGS = Settings()
RULES = RuleTable.load()
SHAPE = load_notifications()
CONFIG = TrafficConfig(alerts=600, seed=11, outage_share=0.05, storm_share=0.3, malformed_share=0.02,
                       duplicate_share=0.02)


def _notices(traffic) -> list[DeliverNotice]:
    """What dsp-mapping sends on ``ast.deliver`` for this traffic (the pure cores in a row)."""
    out = []
    for n, i in enumerate(traffic.inputs):
        event = capture(Inbound(i.subject, i.data, dict(i.headers), n + 1, 1_700_000_000_000), SETTINGS, SHAPE)
        if isinstance(event, OutageNotified):
            out += [notice(e) for e in outage_deliveries(pass_on(event), SHAPE)]
        elif isinstance(event, AlertCaptured):
            enriched = enrich(event)
            if isinstance(enriched, AlertEnriched):
                out += [notice(e) for e in deliveries(enriched, RULES)[0]]
    return out


def test_each_delivery_is_answered_as_its_notice_asks():
    traffic = generate(CONFIG, RULES, SHAPE)
    answers = prepare(traffic, CONFIG.seed).answers
    notices = _notices(traffic)
    assert {n.delivery_id for n in notices} == traffic.expected_deliveries
    assert any(n.dcc_alert_code == SHAPE.dcc_alert_code for n in notices)  # outages among them
    assert any(n.dcc_alert_code not in (None, SHAPE.dcc_alert_code) for n in notices)  # ACB fan-out too
    assert traffic.throttled  # and storm protection's discards
    for n in notices:
        key = (n.delivery_id, n.response_id, n.dcc_alert_code, n.service_user_id)
        assert answers[key] == service_user_answers(
            n.delivery_id, n.response_id, n.dcc_alert_code, n.service_user_id, traffic.dsp_received[n.response_id],
            CONFIG.seed, throttled=n.delivery_id in traffic.throttled,
            throttled_count=traffic.throttled_counts.get(n.delivery_id))


def test_each_input_is_its_own_message_with_its_headers():
    traffic = generate(CONFIG, RULES, SHAPE)
    outgoing = prepare(traffic, CONFIG.seed).outgoing
    assert len(outgoing) == len(traffic.inputs)
    for n, (i, (subject, data, headers)) in enumerate(zip(traffic.inputs, outgoing, strict=True)):
        assert (subject, data) == (i.subject, i.data)
        assert headers == {"Nats-Msg-Id": input_msg_id(i, n), **i.headers}
    assert len({h["Nats-Msg-Id"] for _, _, h in outgoing}) == len(outgoing)


def test_prepared_once_per_seed():
    traffic = generate(TrafficConfig(alerts=20, seed=2), RULES, SHAPE)
    first = prepare(traffic, 2)
    assert prepare(traffic, 2) is first
    assert prepare(traffic, 3) is not first

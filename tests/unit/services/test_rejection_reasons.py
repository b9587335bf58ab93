"""Golden rejections: each reason a stage rejects an input for, with its exact message, and the
input kept whole (subject, headers, bytes, stream position) on the rejection."""

from __future__ import annotations

import msgspec
import pytest

from services.csp_enrichment.core import enrich
from services.dsp_mapping.core import clock_tick, delivery_attempt
from services.hub_capture.core import capture
from services.runtime.service import Inbound
from shared import subjects as s
from shared.events import AlertCaptured, RejectedInput, encoder
from shared.settings import Settings
from tests.harness.rejections import CASES, DSP, OK_N, Case, j

SETTINGS = Settings()
STREAM_TIME_MS = 1_700_000_000_000

#: Every reason the stages give for an input today (``ast.rejected.<stage>``).
REASONS = {
    s.HUB_CAPTURE: {"unknown_subject", "oversize", "bad_json", "too_deep", "bad_timestamp", "missing_field",
                    "bad_field", "oversize_payload", "bad_base64", "bad_comms_hub_id", "bad_notification"},
    s.DSP_MAPPING: {"oversize", "bad_json", "too_deep", "missing_field", "bad_field", "bad_outcome",
                    "bad_throttled_count", "bad_timestamp"},
}


def _stage(case: Case, seq: int) -> RejectedInput:
    msg = Inbound(case.subject, case.data, dict(case.headers), seq, STREAM_TIME_MS)
    if case.stage == s.HUB_CAPTURE:
        event = capture(msg, SETTINGS)
    elif case.subject == s.IN_DSP_CLOCK:
        event = clock_tick(msg, SETTINGS)
    else:
        event = delivery_attempt(msg, SETTINGS)
    assert isinstance(event, RejectedInput), event
    return event


@pytest.mark.parametrize("n", range(len(CASES)), ids=[f"{c.stage}-{c.reason}-{i}" for i, c in enumerate(CASES)])
def test_each_reason_and_message_with_the_input_whole(n):
    case = CASES[n]
    rejected = _stage(case, 1000 + n)
    assert (rejected.stage, rejected.reason, rejected.message) == (case.stage, case.reason, case.message)
    assert rejected.subject == case.subject
    assert rejected.headers == case.headers
    assert rejected.raw == case.data
    assert rejected.source_seq == 1000 + n
    assert rejected.event_id == f"rej:{case.stage}:{case.subject}:{1000 + n}"
    # on the wire: the bytes come back whole from the rejection's JSON
    wire = msgspec.json.decode(encoder.encode(rejected), type=RejectedInput)
    assert wire.raw == case.data and wire.headers == case.headers


def test_every_reason_of_every_input_stage_is_listed():
    listed: dict[str, set[str]] = {}
    for case in CASES:
        listed.setdefault(case.stage, set()).add(case.reason)
    assert listed == REASONS


def _captured() -> AlertCaptured:
    event = capture(Inbound(s.IN_CSP_NORTH, j(OK_N), dict(DSP), 5, STREAM_TIME_MS), SETTINGS)
    assert isinstance(event, AlertCaptured)
    return event


@pytest.mark.parametrize("payload, reason, message", [
    ("AAEC", "bad_gbcs", "payload is not a GBCS message: unknown frame: first byte 0x00, expected DD (MAC header) "
                         "or DF (general signing)"),
    ("not*base64!", "bad_base64", "payload is not Base64: Invalid base64-encoded string: number of data characters "
                                  "(9) cannot be 1 more than a multiple of 4"),
    ("AAE", "bad_base64", "payload is not Base64: Incorrect padding"),
])
def test_csp_enrichment_reasons(payload, reason, message):
    event = msgspec.structs.replace(_captured(), payload=payload)
    rejected = enrich(event)
    assert isinstance(rejected, RejectedInput)
    assert (rejected.stage, rejected.reason, rejected.message) == (s.CSP_ENRICHMENT, reason, message)
    assert rejected.raw == encoder.encode(event) and rejected.source_seq == 5

"""Record building: an AST record from an expectation and its delivery's attempts (pure functions)."""

from __future__ import annotations

from services.metrics.compact import fast_iso, record_flags
from shared.alert_codes import alert_name
from shared.events import AstRecord, DeliveryExpected, Status

__all__ = ["Attempt", "build_record", "su_points"]

#: One distinct attempt: (su_passed, su_acknowledged, acknowledged, throttled_count);
#: su_passed None: throttled.
Attempt = tuple[int | None, int | None, bool, int | None]


def su_points(attempts: tuple[Attempt, ...]) -> tuple[int | None, int | None, bool, bool, int | None]:
    """What a delivery's attempts say: (su_passed, su_acknowledged, acknowledged, throttled,
    throttled_count). su_passed is the earliest attempt's, su_acknowledged the earliest
    acknowledgement; a throttled attempt stands over every other (no SU points at all)."""
    n = len(attempts)
    sp: int | None
    sa: int | None
    throttled = False
    count = None
    if n == 1:
        sp, sa, acked, count = attempts[0]
        if sp is None:
            throttled = True
        elif not acked:
            sa = None
    elif n == 0:
        sp = sa = None
        acked = False
    else:
        passed = [x[0] for x in attempts if x[0] is not None]
        throttled = len(passed) < n
        counts = [x[3] for x in attempts if x[3] is not None]
        count = max(counts) if counts else None
        sp = min(passed) if passed else None
        acks = [(x[1] is None, x[1] or 0, x[0]) for x in attempts if x[2]]
        if acks:
            best = min(acks)
            sa = None if best[0] else best[1]
            acked = True
        else:
            sa = None
            acked = False
    if throttled:  # discarded by storm protection: never passed, whatever else was logged
        return None, None, False, True, count
    return sp, sa, acked, False, count


def build_record(e: DeliveryExpected, attempts: tuple[Attempt, ...], revision: int, did: str) -> AstRecord:
    """The record of delivery ``did`` (revision ``revision``) from its expectation and its
    distinct attempts: legs, status and flags (see ``services.metrics.core``)."""
    chf = e.chf_received
    cr = e.csp_received
    cs = e.csp_sent
    dr = e.dsp_received
    sp, sa, acked, throttled, count = su_points(attempts)
    transit = dr - cs
    skew = transit < 0
    hub = None if cr is None or chf is None else cr - chf
    if hub is not None and hub < 0:
        skew = True
    if sp is None:
        dsp = hs = None
    else:
        dsp = sp - dr
        if dsp < 0:
            skew = True
        if sa is None:
            hs = None
        else:
            hs = sa - sp
            if hs < 0:
                skew = True
    if sa is None or chf is None:
        e2e = None
    else:
        e2e = sa - chf
        if e2e < 0:
            skew = True
    status: Status
    if throttled:
        status = "throttled"
    elif not acked:
        status = "no_handshake"
    elif cr is not None and sp is not None and sa is not None:
        status = "complete"
    else:
        status = "incomplete"
    dat = e.device_alert_time
    code = e.alert_code
    return AstRecord(
        delivery_id=did,
        response_id=e.response_id,
        revision=revision,
        region=e.region,
        comms_hub_id=e.comms_hub_id,
        category=e.category,
        alert_code=code,
        alert_name=alert_name(code),
        dcc_alert_code=e.dcc_alert_code,
        message_code=e.message_code,
        originator=e.originator,
        recipient=e.recipient,
        service_user_id=e.service_user_id,
        device_alert_time=None if dat is None else fast_iso(dat),
        chf_received=None if chf is None else fast_iso(chf),
        csp_received=None if cr is None else fast_iso(cr),
        csp_sent=fast_iso(cs),
        dsp_received=fast_iso(dr),
        su_passed=None if sp is None else fast_iso(sp),
        su_acknowledged=None if sa is None else fast_iso(sa),
        hub_to_csp_ms=hub,
        csp_to_dsp_ms=transit,
        dsp_to_su_ms=dsp,
        su_handshake_ms=hs,
        end_to_end_ms=e2e,
        status=status,
        flags=record_flags(e.flags, chf is None, skew),
        delivery_attempts=len(attempts),
        throttled_count=count,
    )

"""Events for the metrics core, written the way the tests think: times of 2023-06-01 as
"HH:MM:SS.mmm", other timing points as offsets from dsp_received."""

from __future__ import annotations

from typing import Literal

from shared.events import Category, ClockTick, DeliveryAttempted, DeliveryExpected, Region
from shared.timefmt import parse_iso

Outcome = Literal["acknowledged", "failed"]

SUPPLIER = "90-B3-D5-1F-30-01-00-00"


def at(hms: str) -> int:
    """'10:01:00.500' on 2023-06-01 as epoch ms."""
    return parse_iso(f"2023-06-01T{hms}Z")


def exp(did: str, dsp: str, *, region: Region = "north", category: Category = "device_alert", chf: str | None = "-500",
        csp_received: str | None = "-150", csp_sent: str = "-150", device: str | None = "-1500",
        code: str | None = "8F3F", flags: tuple[str, ...] = ("csp_received_mapped",),
        dcc: str | None = None) -> DeliveryExpected:
    """An expectation; other points given as ms offsets from dsp_received ("-500") or None."""
    d = at(dsp)

    def rel(x: str | None) -> int | None:
        return None if x is None else d + int(x)

    return DeliveryExpected(
        event_id=f"exp:{did}", delivery_id=did, response_id=f"resp-{did}", region=region,
        comms_hub_id=1_234_567_890, category=category, alert_code=code, dcc_alert_code=dcc,
        message_code="0x0082", originator="00-11-22-33-44-55-66-77", recipient=SUPPLIER,
        service_user_id=SUPPLIER, device_alert_time=rel(device), chf_received=rel(chf),
        csp_received=rel(csp_received), csp_sent=rel(csp_sent), dsp_received=d, flags=flags,
    )


def att(did: str, passed: str, acked: str | None = None, *, outcome: Outcome = "acknowledged",
        eid: str | None = None) -> DeliveryAttempted:
    return DeliveryAttempted(
        event_id=eid or f"att:{did}:{passed}", delivery_id=did, response_id=f"resp-{did}", dcc_alert_code=None,
        service_user_id=SUPPLIER, su_passed=at(passed), su_acknowledged=None if acked is None else at(acked),
        outcome=outcome,
    )


def tick(hms: str) -> ClockTick:
    return ClockTick(event_id=f"tick:{hms}", time=at(hms))


def ack(e: DeliveryExpected, e2e: int, handshake: int = 100) -> DeliveryAttempted:
    """The acknowledgement making the end-to-end leg ``e2e`` ms (chf is dsp - 500 ms)."""
    acked = e.dsp_received - 500 + e2e
    return DeliveryAttempted(event_id=f"ack:{e.delivery_id}", delivery_id=e.delivery_id, response_id=e.response_id,
                             dcc_alert_code=e.dcc_alert_code, service_user_id=SUPPLIER,
                             su_passed=acked - handshake, su_acknowledged=acked, outcome="acknowledged")

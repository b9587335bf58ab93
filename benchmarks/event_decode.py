"""Decode time of event envelopes read back from the log: msgspec's typed decode alone, and
through the upcasting reader (``shared.upcasting``) with every event at its current version.

The metrics inputs as dsp-mapping writes them (one delivery expected, one attempted per alert),
in envelopes of ``ENVELOPE_MAX_EVENTS``. Run: ``python -m alert_timing_benchmarks.event_decode [N]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from services.runtime.service import ENVELOPE_MAX_EVENTS
from shared.events import AnyEvent, Batch, DeliveryAttempted, DeliveryExpected, batch_decoder, encoder
from shared.upcasting import reader

__all__ = ["build_envelopes", "run_bench"]


def build_envelopes(events: int) -> list[bytes]:
    out: list[AnyEvent] = []
    for n in range(events // 2):
        t = 1_700_000_000_000 + n * 40
        out.append(DeliveryExpected(
            event_id=f"exp:{n}", delivery_id=f"d{n}", response_id=f"N{n:08d}", region="north",
            comms_hub_id=n % 50_000, category="device_alert", alert_code="8F3F", dcc_alert_code=None,
            message_code="0x0082", originator="00-DB-12-34-56-78-9A-BC", recipient="90-B3-D5-1F-30-01-00-00",
            service_user_id="supplier-1", device_alert_time=t - 900, chf_received=t - 800, csp_received=t - 500,
            csp_sent=t - 400, dsp_received=t, flags=(), trace=None))
        out.append(DeliveryAttempted(
            event_id=f"att:{n}", delivery_id=f"d{n}", response_id=f"N{n:08d}", dcc_alert_code=None,
            service_user_id="supplier-1", su_passed=t + 30, su_acknowledged=t + 90, outcome="acknowledged"))
    return [encoder.encode(Batch(events=out[i:i + ENVELOPE_MAX_EVENTS]))
            for i in range(0, len(out), ENVELOPE_MAX_EVENTS)]


def _best(decode: Callable[[bytes], list[AnyEvent]], envelopes: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for data in envelopes:
            decode(data)
        best = min(best, time.perf_counter() - start)
    return best


def run_bench(events: int = 100_000, repeat: int = 7) -> dict[str, float]:
    envelopes = build_envelopes(events)
    typed = _best(lambda d: batch_decoder.decode(d).events, envelopes, repeat)
    upcasting = _best(reader.batch, envelopes, repeat)
    return {"events": events, "typed_ms": round(typed * 1000, 1), "upcasting_ms": round(upcasting * 1000, 1),
            "overhead_pct": round((upcasting / typed - 1) * 100, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("events", type=int, nargs="?", default=100_000)
    p.add_argument("--repeat", type=int, default=7, help="best of this many passes")
    args = p.parse_args()
    print(run_bench(args.events, args.repeat))


if __name__ == "__main__":
    main()

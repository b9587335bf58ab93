"""Decode time of event envelopes read back from the log: msgspec's typed decode alone, and
through the upcasting reader (``shared.upcasting``) with every event at its current version.

The metrics inputs as dsp-mapping writes them (one delivery expected, one attempted per alert),
in envelopes of ``ENVELOPE_MAX_EVENTS``. Run: ``python -m alert_timing_benchmarks.event_decode [N]``.

``--inputs``: the gateway's inputs instead (the simulator's CSP messages and delivery-log
lines), read by the stages' cores as they run (``capture``, ``delivery_attempt``: typed first)
and by the field checks alone (``checked_capture``, ``checked_attempt``): µs per input.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from services.dsp_mapping.core import checked_attempt, delivery_attempt
from services.hub_capture.core import capture, checked_capture
from services.runtime.service import ENVELOPE_MAX_EVENTS, Inbound
from shared import subjects as s
from shared.csp_notifications import PowerOutageShape
from shared.dcc_rules import RuleTable
from shared.events import AnyEvent, Batch, DeliveryAttempted, DeliveryExpected, batch_decoder, encoder
from shared.settings import Settings
from shared.upcasting import reader

__all__ = ["build_envelopes", "build_inputs", "run_bench", "run_inputs_bench"]


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


def build_inputs(alerts: int) -> tuple[list[Inbound], list[Inbound]]:
    """The simulator's CSP inputs for ``alerts`` alerts, and one delivery-log line per delivery."""
    from alert_timing.simulator.traffic import TrafficConfig, generate, service_user_answers

    rules = RuleTable.from_toml('schema_version = 1\ndefault_service_user = "90-B3-D5-1F-30-01-00-00"\n'
                                '[default]\ndcc_alerts = ["N39"]\n')
    traffic = generate(TrafficConfig(alerts=alerts, seed=5), rules, PowerOutageShape())
    csp = [Inbound(i.subject, i.data, i.headers, n, 1_700_000_000_000) for n, i in enumerate(traffic.inputs)]
    log = [Inbound(s.IN_DSP_DELIVERY, line.data, {}, n, 1_700_000_000_000)
           for n, i in enumerate(traffic.inputs) for d in i.deliveries
           for line in service_user_answers(d, i.response_id, None, "90-B3-D5-1F-30-01-00-00", i.dsp_received, 5)]
    return csp, log


def run_inputs_bench(alerts: int = 1_000, repeat: int = 80) -> dict[str, float]:
    """µs per input, the best of ``repeat`` passes over each set, the readers taking turns (on a
    shared machine the best of many short, interleaved passes is the steadiest figure)."""
    csp, log = build_inputs(alerts)
    settings = Settings()
    readers: dict[str, tuple[Callable[[Inbound, Settings], object], list[Inbound]]] = {
        "capture_us": (capture, csp), "checked_capture_us": (checked_capture, csp),
        "attempt_us": (delivery_attempt, log), "checked_attempt_us": (checked_attempt, log)}
    best = dict.fromkeys(readers, float("inf"))
    for _ in range(repeat):
        for name, (read, msgs) in readers.items():
            start = time.perf_counter()
            for m in msgs:
                read(m, settings)
            best[name] = min(best[name], time.perf_counter() - start)
    return {"csp_inputs": len(csp), "log_lines": len(log),
            **{name: round(best[name] / len(msgs) * 1e6, 2) for name, (_, msgs) in readers.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("events", type=int, nargs="?", default=None, help="events (default 100,000); with --inputs: "
                   "alerts (default 1,000)")
    p.add_argument("--repeat", type=int, default=None, help="best of this many passes (default 7; --inputs: 80)")
    p.add_argument("--inputs", action="store_true", help="the gateway's inputs through the stages' readers")
    args = p.parse_args()
    if args.inputs:
        print(run_inputs_bench(args.events or 1_000, args.repeat or 80))
    else:
        print(run_bench(args.events or 100_000, args.repeat or 7))


if __name__ == "__main__":
    main()

"""Throughput and memory of the metrics core (pure: no NATS, no files).

``python -m alert_timing_benchmarks.metrics_core [--records N] [--pending N]`` prints:

- records/s: deliveries joined, windowed and sketched per second by ``MetricsCore.apply``
  over a synthetic day (an expectation and its delivery-log line per record, the log line
  arriving a little later; 2 % never acknowledged, 1 % a failed attempt first, some
  without HubTimestamp, a few service responses), window closes and reports included;
- the resident memory held by 1,000,000 pending deliveries (expectations decoded from JSON,
  as the service receives them, none acknowledged, none timed out).
"""

from __future__ import annotations

import argparse
import gc
import heapq
import multiprocessing
import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import msgspec
import psutil

from services.metrics.core import MetricsConfig, MetricsCore
from services.metrics.model import ClosedWindow, Window
from services.metrics.windows import Windows
from shared.events import AnyEvent, DeliveryAttempted, DeliveryExpected, Region, ServiceResponseSeen

DAY0 = 1_685_577_600_000  # 2023-06-01T00:00:00Z
REGIONS: tuple[Region, ...] = ("north", "central", "south")
CODES = ("8F3F", "810D", "8F0F", "8F72", "8F35", "8F57", "8F1D", "8F12")
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
ACB = "90-B3-D5-1F-30-00-00-02"


def expectation(i: int, dsp_received: int, rng: random.Random) -> DeliveryExpected:
    region = REGIONS[i % 3]
    dcc = i % 10 == 0
    hub = rng.random() > 0.05
    chf = dsp_received - rng.randint(400, 4_000)
    csp_sent = dsp_received - rng.randint(20, 300)
    return DeliveryExpected(
        event_id=f"exp:{i:010d}:8a1f3c9be2d04f17",
        delivery_id=f"{i:010d}-8a1f3c9be2d04f17" + (":N53" if dcc else ""),
        response_id=f"{i:010d}-8a1f3c9be2d04f17",
        region=region,
        comms_hub_id=1_000_000_000 + i,
        category="dcc_alert" if dcc else "device_alert",
        alert_code=CODES[i % len(CODES)],
        dcc_alert_code="N53" if dcc else None,
        message_code="0x0082",
        originator=f"00-DB-12-34-56-{(i >> 16) & 255:02X}-{(i >> 8) & 255:02X}-{i & 255:02X}",
        recipient=ACB if dcc else SUPPLIER,
        service_user_id=SUPPLIER,
        device_alert_time=chf - 1_000,
        chf_received=chf if hub else None,
        csp_received=csp_sent - 350 if region == "north" else csp_sent - rng.randint(5, 50),
        csp_sent=csp_sent,
        dsp_received=dsp_received,
        flags=("csp_received_mapped",) if region == "north" else (),
        trace=f"00-{i:032x}-{i:016x}-01",
    )


def synthetic_events(n: int, span_ms: int = 86_400_000, seed: int = 7) -> list[AnyEvent]:
    """``n`` deliveries over ``span_ms`` of event time, in stream order: each delivery-log
    line follows its expectation once the DSP clock has passed its acknowledgement (plus up
    to 20 s for the log to ship)."""
    rng = random.Random(seed)
    events: list[AnyEvent] = []
    later: list[tuple[int, int, AnyEvent]] = []  # (release time, tie-break, attempt)
    step = span_ms / n
    for i in range(n):
        dsp = DAY0 + int(i * step)
        while later and later[0][0] <= dsp:
            events.append(heapq.heappop(later)[2])
        exp = expectation(i, dsp, rng)
        events.append(exp)
        roll = rng.random()
        passed = dsp + rng.randint(5, 80)
        if roll >= 0.02:  # 2 % never acknowledged: they time out
            if roll < 0.03:
                failed = DeliveryAttempted(
                    event_id=f"att:{i}:0", delivery_id=exp.delivery_id, response_id=exp.response_id,
                    dcc_alert_code=exp.dcc_alert_code, service_user_id=SUPPLIER, su_passed=passed,
                    su_acknowledged=None, outcome="failed")
                heapq.heappush(later, (passed + rng.randint(0, 20_000), 2 * i, failed))
                passed += 30_000
            acked = passed + rng.randint(50, 2_000)
            ack = DeliveryAttempted(
                event_id=f"att:{i}:1", delivery_id=exp.delivery_id, response_id=exp.response_id,
                dcc_alert_code=exp.dcc_alert_code, service_user_id=SUPPLIER, su_passed=passed,
                su_acknowledged=acked, outcome="acknowledged")
            heapq.heappush(later, (acked + rng.randint(0, 20_000), 2 * i + 1, ack))
        if i % 50 == 0:
            events.append(ServiceResponseSeen(event_id=f"rsp:{i}", response_id=f"r{i}", region=exp.region,
                                              cra_flag="02", message_code="0x0001", dsp_received=dsp))
    while later:
        events.append(heapq.heappop(later)[2])
    return events


def _rss() -> int:
    return int(psutil.Process(os.getpid()).memory_info().rss)


class _TimedWindows(Windows):
    """The core's windows with the time spent closing them (reports with their sketches) added up."""

    closing_seconds = 0.0

    def close_due(self, watermark: float, closed: list[ClosedWindow]) -> list[Window]:
        t0 = time.perf_counter()
        try:
            return super().close_due(watermark, closed)
        finally:
            self.closing_seconds += time.perf_counter() - t0


def throughput(n: int, batch: int = 512) -> dict[str, Any]:
    """``MetricsCore.apply`` over ``n`` records in batches of ``batch`` events. Also timed
    apart: closing windows (reports with their sketches), the windowing + sketch stage."""
    events = synthetic_events(n)
    config = MetricsConfig()
    core = MetricsCore(config)
    core.windows = timed = _TimedWindows(config)
    gc.collect()
    records = reports = 0
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        out = core.apply(events[i : i + batch])
        records += len(out.records)
        reports += len(out.closed)
    seconds = time.perf_counter() - started
    return {
        "records": n,
        "events": len(events),
        "records_out": records,
        "windows_closed": reports,
        "seconds": round(seconds, 3),
        "records_per_s": round(n / seconds),
        "window_close_seconds": round(timed.closing_seconds, 3),
        "window_close_records_per_s": round(n / timed.closing_seconds) if timed.closing_seconds else None,
    }


def _decoded_expectations(n: int, chunk: int = 50_000) -> Iterator[list[AnyEvent]]:
    rng = random.Random(11)
    encoder = msgspec.json.Encoder()
    decoder = msgspec.json.Decoder(list[AnyEvent])
    for first in range(0, n, chunk):
        batch = [expectation(i, DAY0 + 600_000 + i // 10, rng) for i in range(first, min(n, first + chunk))]
        yield decoder.decode(encoder.encode(batch))


def pending_memory(n: int = 1_000_000) -> dict[str, Any]:
    """RSS held by ``n`` pending deliveries (within one handshake timeout: none resolve)."""
    core = MetricsCore(MetricsConfig(handshake_timeout_ms=3_600_000))
    gc.collect()
    before = _rss()
    for events in _decoded_expectations(n):
        core.apply(events)
        del events
    gc.collect()
    after = _rss()
    assert core.pending == n, core.pending
    held = after - before
    return {"pending": n, "rss_bytes": held, "rss_mib": round(held / 2**20, 1),
            "process_rss_mib": round(after / 2**20, 1),
            "bytes_per_pending": round(held / n)}


def run_bench(n: int = 500_000, pending: int = 1_000_000) -> dict[str, Any]:
    """Throughput over ``n`` records; RSS of ``pending`` pending deliveries, measured in a fresh
    process (so memory the throughput run left to the allocator does not hide it)."""
    result: dict[str, Any] = {"throughput": throughput(n)}
    if pending:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            result["pending_memory"] = pool.submit(pending_memory, pending).result()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alert_timing_benchmarks.metrics_core", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--pending", type=int, default=1_000_000, help="0 to skip the memory figure")
    args = parser.parse_args(argv)
    result = run_bench(args.records, args.pending)
    t = result["throughput"]
    print(f"apply (join, records, windows, sketches)  {t['records_per_s']:,} records/s "
          f"({t['records']:,} records, {t['events']:,} events, {t['windows_closed']} windows, {t['seconds']} s)")
    print(f"  of which closing windows (reports + sketches)  {t['window_close_seconds']} s "
          f"= {t['window_close_records_per_s']:,} records/s")
    if "pending_memory" in result:
        m = result["pending_memory"]
        print(f"pending deliveries    {m['pending']:,} hold {m['rss_mib']} MiB RSS ({m['bytes_per_pending']} B each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

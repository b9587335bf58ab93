"""Decode throughput of :func:`shared.gbcs.decode` on a realistic traffic mix.

Mix (built with the encoder): 70 % DLMS electricity alerts (half with a MAC
header, half signed), 20 % GBZ gas alerts, 5 % Service Responses, 5 % ASN.1
future-dated alerts. Run: ``python -m alert_timing_benchmarks.gbcs [N]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.gbcs import (
    ACB_EUI,
    NETWORK_OPERATOR_EUI,
    SUPPLIER_EUI,
    build_alert,
    build_response,
    decode,
)

__all__ = ["build_mix", "run_bench"]

_ELECTRICITY_CODES = ("8F3F", "810D", "8F0F", "8F72", "8F35", "8F36", "8F57", "8F0A")
_GAS_CODES = ("8F1D", "810D", "8F0F", "8F72", "8F3F")
_HUB_CODES = ("8F12", "8F20", "8F26", "8F8B")
_DISTINCT_FRAMES = 5_000


def build_mix(count: int = _DISTINCT_FRAMES, seed: int = 122) -> list[bytes]:
    """``count`` distinct frames in the benchmark's proportions (deterministic for a seed)."""
    rng = random.Random(seed)
    start = datetime(2023, 6, 1, tzinfo=UTC)
    frames: list[bytes] = []
    for n in range(count):
        device = f"00-DB-12-34-56-{rng.randrange(256):02X}-{rng.randrange(256):02X}-{rng.randrange(256):02X}"
        moment = start + timedelta(milliseconds=rng.randrange(86_400_000) // 10 * 10)
        counter = 0x1000 + n
        roll = rng.random()
        if roll < 0.70:
            to_acb = rng.random() < 0.1
            frames.append(
                build_alert(
                    alert_code=rng.choice(_HUB_CODES if to_acb else _ELECTRICITY_CODES),
                    originator=device,
                    recipient=ACB_EUI if to_acb else rng.choice((SUPPLIER_EUI, NETWORK_OPERATOR_EUI)),
                    alert_time=moment,
                    counter=counter,
                    fmt="dlms",
                    mac_header=rng.random() < 0.5,
                    signed=rng.random() < 0.5,
                )
            )
        elif roll < 0.90:
            frames.append(
                build_alert(
                    alert_code=rng.choice(_GAS_CODES),
                    originator=device,
                    recipient=SUPPLIER_EUI,
                    alert_time=moment,
                    counter=counter,
                    fmt="gbz",
                    mac_header=rng.random() < 0.5,
                    signed=rng.random() < 0.5,
                )
            )
        elif roll < 0.95:
            frames.append(
                build_response(
                    originator=device,
                    recipient=SUPPLIER_EUI,
                    counter=counter,
                    mac_header=rng.random() < 0.5,
                    signed=rng.random() < 0.5,
                    date_time=moment,
                )
            )
        else:
            frames.append(
                build_alert(
                    alert_code=rng.choice(("8F66", "8F67")),
                    originator=device,
                    recipient=SUPPLIER_EUI,
                    alert_time=moment,
                    counter=counter,
                    fmt="asn1",
                    signed=True,
                )
            )
    return frames


def run_bench(n: int = 200_000) -> dict[str, Any]:
    """Decode ``n`` frames of the mix on one core; return the figures."""
    distinct = build_mix(min(n, _DISTINCT_FRAMES))
    frames = (distinct * (n // len(distinct) + 1))[:n]
    for frame in distinct[:1_000]:  # warm up
        decode(frame)
    started = time.perf_counter()
    for frame in frames:
        decode(frame)
    elapsed = time.perf_counter() - started
    return {
        "decodes": n,
        "seconds": round(elapsed, 4),
        "decodes_per_second": round(n / elapsed),
        "microseconds_per_decode": round(elapsed / n * 1e6, 3),
        "mean_frame_bytes": round(sum(map(len, distinct)) / len(distinct), 1),
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alert_timing_benchmarks.gbcs",
                                     description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("decodes", nargs="?", type=int, default=200_000, help="how many decodes (%(default)s)")
    n = parser.parse_args(argv).decodes
    figures = run_bench(n)
    for key, value in figures.items():
        print(f"{key:<24} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

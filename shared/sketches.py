"""DDSketch bins for leg latencies: summarising values, reading quantiles, merging windows into
days and months (``merge_reports``)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import cast

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping

from shared.events import (
    LEGS,
    LegStats,
    ReportRow,
    RollupReport,
    SketchBins,
    WindowReport,
)

QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99))
ALL = "all"
_NEVER = float("inf")

LegSummary = tuple[int, int, dict[int, int], int | None, int | None, int]

# --------------------------------------------------------------------------- sketches


class _BinKeys(dict[int, int | None]):
    """value -> DDSketch bin key (None for 0), computed once per value."""

    def __init__(self, mapping: LogarithmicMapping) -> None:
        super().__init__()
        self._key = mapping.key

    def __missing__(self, value: int) -> int | None:
        key = self._key(value) if value else None
        if len(self) < 1_000_000:
            self[value] = key
        return key


class Sketcher:
    """DDSketch bins of integer millisecond values (``ddsketch`` logarithmic mapping; the bin
    of each value cached)."""

    def __init__(self, relative_accuracy: float) -> None:
        self.relative_accuracy = relative_accuracy
        self.mapping = LogarithmicMapping(relative_accuracy)
        self.gamma = self.mapping.gamma
        self._keys = _BinKeys(self.mapping)

    def summarise(self, values: list[int]) -> LegSummary:
        """count, zero count, bins (key -> count), min, max, sum of values >= 0."""
        if not values:
            return (0, 0, {}, None, None, 0)
        bins = Counter(map(self._keys.__getitem__, values))
        zero = bins.pop(None, 0)  # what is left is keyed by int only
        return (len(values), zero, cast(dict[int, int], bins), min(values), max(values), sum(values))

    def stats(self, summary: LegSummary) -> LegStats:
        count, zero, bins, lo, hi, total = summary
        sketch = SketchBins(relative_accuracy=self.relative_accuracy, gamma=self.gamma,
                            zero_count=zero, bins=dict(sorted(bins.items())))
        return leg_stats_from_bins(sketch, count, lo, hi, total)




def merge_summaries(parts: list[LegSummary]) -> LegSummary:
    if len(parts) == 1:
        return parts[0]
    bins: dict[int, int] = {}
    count = zero = total = 0
    lo: int | None = None
    hi: int | None = None
    for c, z, b, mn, mx, t in parts:
        if not c:
            continue
        count += c
        zero += z
        total += t
        for k, n in b.items():
            bins[k] = bins.get(k, 0) + n
        if mn is not None and (lo is None or mn < lo):
            lo = mn
        if mx is not None and (hi is None or mx > hi):
            hi = mx
    return (count, zero, bins, lo, hi, total)


def ddsketch_of(sketch: SketchBins) -> DDSketch:
    """A ``ddsketch.DDSketch`` holding exactly the bins of ``sketch`` (for checks and tools)."""
    dd = DDSketch(sketch.relative_accuracy)
    mapping = LogarithmicMapping(sketch.relative_accuracy, offset=sketch.index_offset)
    if sketch.zero_count:
        dd.add(0.0, float(sketch.zero_count))
    for key, n in sketch.bins.items():
        if n > 0:
            dd.add(mapping.value(key), float(n))
    return dd


_MAPPINGS: dict[tuple[float, float], LogarithmicMapping] = {}


def sketch_quantiles(sketch: SketchBins, quantiles: Iterable[float]) -> list[float | None]:
    """Quantiles of the sketch bins, by DDSketch's own rule (``DDSketch.get_quantile_value``:
    rank ``q * (n - 1)``; 0 while the rank is below the zero count; else the first bin whose
    running count exceeds the rank, read as ``mapping.value(key)``), without building a
    ``DDSketch`` per read. ``ddsketch_of(sketch).get_quantile_value(q)`` gives the same."""
    mapping = _MAPPINGS.get((sketch.relative_accuracy, sketch.index_offset))
    if mapping is None:
        mapping = _MAPPINGS[(sketch.relative_accuracy, sketch.index_offset)] = LogarithmicMapping(
            sketch.relative_accuracy, offset=sketch.index_offset)
    zero = sketch.zero_count
    bins = sketch.bins
    keys = sorted(bins)
    count = zero + sum(bins.values())
    wanted = list(quantiles)
    result: list[float | None] = [None] * len(wanted)
    if count == 0:
        return result
    todo = sorted((q * (count - 1), i) for i, q in enumerate(wanted) if 0 <= q <= 1)
    todo.append((_NEVER, -1))  # sentinel
    j = 0
    while todo[j][0] < zero:
        result[todo[j][1]] = 0.0
        j += 1
    last = len(todo) - 1
    running = zero
    rank = todo[j][0]
    for k in keys:
        if j == last:
            break
        running += bins[k]
        if running > rank:
            value = float(mapping.value(k))
            while running > rank:
                result[todo[j][1]] = value
                j += 1
                rank = todo[j][0]
    while j < last:  # rounding at the very top: DDSketch answers with the last bin
        result[todo[j][1]] = float(mapping.value(keys[-1]))
        j += 1
    return result


def leg_stats_from_bins(sketch: SketchBins, count: int, lo: int | None, hi: int | None, total: int) -> LegStats:
    """Leg statistics with the percentiles read from the sketch bins."""
    if count == 0:
        return LegStats(count=0, p50=None, p90=None, p95=None, p99=None, min=None, max=None,
                        sum=0, sketch=sketch)
    p50, p90, p95, p99 = sketch_quantiles(sketch, [q for _, q in QUANTILES])
    return LegStats(count=count, min=lo, max=hi, sum=total, sketch=sketch, p50=p50, p90=p90, p95=p95, p99=p99)


def merge_legs(legs: list[LegStats]) -> LegStats:
    first = legs[0].sketch
    gamma, offset = first.gamma, first.index_offset
    bins: dict[int, int] = {}
    zero = count = total = 0
    lo: int | None = None
    hi: int | None = None
    for leg in legs:
        sk = leg.sketch
        if not math.isclose(sk.gamma, gamma, rel_tol=1e-12) or sk.index_offset != offset:
            raise ValueError("cannot merge sketches with different relative accuracy or index offset")
        zero += sk.zero_count
        for k, n in sk.bins.items():
            bins[k] = bins.get(k, 0) + n
        count += leg.count
        total += leg.sum
        if leg.min is not None and (lo is None or leg.min < lo):
            lo = leg.min
        if leg.max is not None and (hi is None or leg.max > hi):
            hi = leg.max
    merged = SketchBins(relative_accuracy=first.relative_accuracy, gamma=gamma, index_offset=offset,
                        zero_count=zero, bins=dict(sorted(bins.items())))
    return leg_stats_from_bins(merged, count, lo, hi, total)


_COUNT_FIELDS = ("alerts", "complete", "no_handshake", "incomplete", "throttled", "missing_hub_timestamp",
                 "clock_skew", "delivery_without_alert", "service_responses_seen", "rejected")


def merge_reports(reports: Iterable[WindowReport]) -> RollupReport:
    """Roll window reports up (a day, a month): counts added, sketches merged bin by bin,
    percentiles read from the merged sketch (same error bound). Of several revisions of a
    window only the latest is used."""
    latest: dict[str, WindowReport] = {}
    for report in reports:
        held = latest.get(report.window_start)
        if held is None or report.revision > held.revision:
            latest[report.window_start] = report
    if not latest:
        return RollupReport(period_start=None, period_end=None, windows=0,
                            sketch_relative_accuracy=0.0, rows=[])
    accuracy = {r.sketch_relative_accuracy for r in latest.values()}
    if len(accuracy) != 1:
        raise ValueError(f"reports with different sketch accuracies: {sorted(accuracy)}")
    groups: dict[tuple[str, str], list[ReportRow]] = {}
    for start in sorted(latest):
        for row in latest[start].rows:
            groups.setdefault((row.region, row.category), []).append(row)
    rows = []
    for key in sorted(groups, key=row_order):
        parts = groups[key]
        counts = {f: sum(getattr(p, f) for p in parts) for f in _COUNT_FIELDS}
        legs = {leg: merge_legs([p.legs[leg] for p in parts]) for leg in LEGS}
        rows.append(ReportRow(region=key[0], category=key[1], legs=legs, **counts))
    return RollupReport(
        period_start=min(r.window_start for r in latest.values()),
        period_end=max(r.window_end for r in latest.values()),
        windows=len(latest),
        sketch_relative_accuracy=accuracy.pop(),
        rows=rows,
    )


def row_order(key: tuple[str, str]) -> tuple[int, str, int, str]:
    region, category = key
    return (region != ALL, region, category != ALL, category)

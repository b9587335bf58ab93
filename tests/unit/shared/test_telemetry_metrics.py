"""The instruments are typed attributes of ``Metrics``: a misspelt one is an AttributeError at
run time and an error for mypy, never a silent zero."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api as mypy_api
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared.settings import Settings
from shared.telemetry.metrics import COUNTERS, LEVEL_INSTRUMENTS, RECORDS, Counter, Metrics, setup_metrics

REPO = Path(__file__).resolve().parents[3]


def exported(reader: InMemoryMetricReader) -> dict[str, float]:
    data = reader.get_metrics_data()
    assert data is not None
    return {metric.name: sum(getattr(p, "value", 0) for p in metric.data.data_points)
            for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics}


def test_every_counter_is_an_attribute_and_counts() -> None:
    reader = InMemoryMetricReader()
    metrics = setup_metrics("metrics", Settings(), reader=reader)
    counters = {c.instrument.name: c for c in vars(metrics).values() if isinstance(c, Counter)}
    assert set(counters) == set(COUNTERS)
    for n, counter in enumerate(counters.values(), start=1):
        counter.add(n, service="metrics")
    got = exported(reader)
    assert {name: got[name] for name in COUNTERS} == {name: n for n, name in enumerate(counters, start=1)}
    metrics.shutdown()


def test_a_misspelt_instrument_is_an_attribute_error() -> None:
    metrics = setup_metrics("metrics", Settings(), reader=InMemoryMetricReader())
    with pytest.raises(AttributeError):
        metrics.recrods.add(1)  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        metrics.add("alert_timing.recrods", 1)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="not a level"):
        metrics.set_level(RECORDS, 1.0)
    metrics.set_level(LEVEL_INSTRUMENTS[0], 3.0, partition="0")
    metrics.shutdown()


def test_mypy_rejects_a_misspelt_instrument(tmp_path: Path) -> None:
    source = tmp_path / "misspelt.py"
    source.write_text("from shared.telemetry.metrics import Metrics\n\n\n"
                      "def count(metrics: Metrics) -> None:\n"
                      "    metrics.records.add(1, status='complete')\n"
                      "    metrics.recrods.add(1, status='complete')\n")
    out, _, status = mypy_api.run([str(source), "--no-incremental", "--follow-imports=silent",
                                   "--config-file", str(REPO / "pyproject.toml")])
    assert status == 1
    assert out.count("error:") == 1 and '"Metrics" has no attribute "recrods"' in out, out


def test_off_is_a_no_op() -> None:
    metrics = Metrics("hub-capture")
    assert not metrics.enabled
    metrics.messages_in.add(3, service="hub-capture")
    metrics.leg.record(10.0, leg="hub_to_csp_ms")
    metrics.set_level(LEVEL_INSTRUMENTS[0], 1.0)
    assert metrics.levels == {}

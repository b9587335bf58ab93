"""A paused service changes no figure.

A process frozen (SIGSTOP: a stalled VM, a debugger, a long swap storm) for longer than the
consumers' ``ack_wait`` and the metrics service's idle-close time keeps the messages it was
delivered and misses everything meanwhile; the rest of the pipeline carries on and, for the
metrics service, the world goes quiet. When it resumes, the backlog comes through at once. Each
case is held to ``check``: the same records and 15-minute figures as the undisturbed run, no
record or revision counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import bus
from shared import subjects as s
from tests.harness.faults import Baseline, Harness, Outcome, check, run_case, traffic_config

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: Longer than the consumers' ack_wait and the idle-close time (both 30 s by default): the held
#: messages are due for redelivery and the metrics service has seen nothing for that long.
PAUSE_S = max(bus.ConsumerSpec.ack_wait_s, 30.0) + 5.0
#: Inputs per second while traffic goes on through a pause (3,000 alerts: about 50 s).
SLOW_RATE = 60.0
#: Event time the traffic spans in the long-span cases: what arrives during a pause 3 s into a
#: 10 s run then covers more than the metrics service's done horizon (a day).
LONG_SPAN_HOURS = 48.0


@pytest.fixture(scope="module")
def long_span_baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    """The undisturbed run of the long-span traffic."""
    outcome, _ = run_case(tmp_path_factory.mktemp("long-span"), "baseline-long-span",
                          config=traffic_config(LONG_SPAN_HOURS))
    yield outcome


@pytest.mark.parametrize("service", s.SERVICES)
def test_paused_while_the_traffic_ends(tmp_path: Path, baseline: Baseline, service: str) -> None:
    """Paused three seconds into a ten-second run: the traffic ends while it is frozen."""

    async def faults(h: Harness) -> None:
        await h.at(3.0)
        await h.pause(f"{service}-0", PAUSE_S)

    outcome, _ = run_case(tmp_path, f"pause-{service}-traffic-ends", faults)
    assert len(outcome.faults) == 2
    check(outcome, baseline.outcome())


def test_dsp_mapping_paused_while_the_traffic_goes_on(tmp_path: Path, baseline: Baseline) -> None:
    """Paused three seconds into a fifty-second run and resumed while inputs still arrive."""

    async def faults(h: Harness) -> None:
        await h.at(3.0)
        await h.pause(f"{s.DSP_MAPPING}-0", PAUSE_S)

    outcome, _ = run_case(tmp_path, "pause-dsp-mapping-traffic-goes-on", faults, rate=SLOW_RATE)
    check(outcome, baseline.outcome())


def test_dsp_mapping_paused_while_more_than_a_day_of_traffic_ends(tmp_path: Path, long_span_baseline: Outcome) -> None:
    """dsp-mapping paused three seconds into a ten-second run of two simulated days: while it is
    frozen, csp-enrichment's service responses and the rejections (which do not pass through
    it) carry on to the end of the traffic, more than a day of event time past the alerts it
    holds. Its backlog must still give the undisturbed records and window figures (it once came
    out no_handshake, in windows already reported without it and forgotten)."""

    async def faults(h: Harness) -> None:
        await h.at(3.0)
        await h.pause(f"{s.DSP_MAPPING}-0", PAUSE_S)

    outcome, _ = run_case(tmp_path, "pause-dsp-mapping-long-span", faults, config=traffic_config(LONG_SPAN_HOURS))
    assert len(outcome.faults) == 2
    check(outcome, long_span_baseline)

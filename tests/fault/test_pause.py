"""A paused service changes no figure.

A process frozen (SIGSTOP: a stalled VM, a debugger, a long swap storm) for longer than the
consumers' ``ack_wait`` and the metrics service's idle-close time keeps the messages it was
delivered and misses everything meanwhile; the rest of the pipeline carries on and, for the
metrics service, the world goes quiet. When it resumes, the backlog comes through at once. Each
case is held to ``check``: the same records and 15-minute figures as the undisturbed run, no
record or revision counted twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import bus
from shared import subjects as s
from tests.harness.faults import Baseline, Harness, check, run_case

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: Longer than the consumers' ack_wait and the idle-close time (both 30 s by default): the held
#: messages are due for redelivery and the metrics service has seen nothing for that long.
PAUSE_S = max(bus.ConsumerSpec.ack_wait_s, 30.0) + 5.0
#: Inputs per second while traffic goes on through a pause (3,000 alerts: about 50 s).
SLOW_RATE = 60.0


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

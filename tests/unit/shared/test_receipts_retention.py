"""The delivery receipts outlive the re-delivery horizon: ``AST_OUT``'s ``max_age`` is derived
from ``delivery_horizon_days``, and every window file set the deliverer still looks at was
written (so its receipt stored) within that age."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from services.metrics.delivery import local_file_sets
from shared import subjects as s
from shared.bus import RECEIPT_MARGIN_S, receipts_max_age_s, stream_configs
from shared.settings import Settings
from tests.harness.delivery import write_set


def max_ages(config: Settings) -> dict[str, float]:
    return {c.name: c.max_age for c in stream_configs(config) if c.name and c.max_age is not None}


def test_the_defaults_keep_receipts_past_the_horizon() -> None:
    config = Settings()
    ages = max_ages(config)
    assert ages[s.STREAM_OUT] >= config.delivery_horizon_days * 86_400 + RECEIPT_MARGIN_S
    assert ages[s.STREAM_OUT] == receipts_max_age_s(config)


@given(st.floats(3600, 60 * 86_400), st.integers(0, 60))
def test_ast_out_keeps_receipts_for_the_horizon_and_other_streams_their_own_age(max_age: float,
                                                                                 horizon: int) -> None:
    config = Settings(stream_max_age_s=max_age, delivery_horizon_days=horizon)
    ages = max_ages(config)
    assert ages[s.STREAM_OUT] >= horizon * 86_400 + RECEIPT_MARGIN_S
    assert ages[s.STREAM_OUT] >= max_age
    assert all(age == max_age for name, age in ages.items() if name != s.STREAM_OUT)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 30), st.integers(-3600, 3600))
def test_every_set_looked_at_was_written_within_the_receipts_age(tmp_path_factory, horizon: int,  # type: ignore[no-untyped-def]
                                                                 offset_s: int) -> None:
    data: Path = tmp_path_factory.mktemp("data")
    now = int(time.time())  # whole seconds: the edge is exact
    written = now - horizon * 86_400 + offset_s  # either side of the horizon's edge
    for path in write_set(data, "ast_20230601T1015_r1"):
        os.utime(path, (written, written))
    looked_at = local_file_sets(data, horizon, int(now * 1000))
    assert bool(looked_at) == (offset_s >= 0)
    for fs in looked_at:  # its receipt was stored after the set was written: it is younger than this
        receipt_age_at_most_s = (now * 1000 - fs.written_ms) / 1000
        assert receipt_age_at_most_s <= receipts_max_age_s(Settings(delivery_horizon_days=horizon)) - RECEIPT_MARGIN_S

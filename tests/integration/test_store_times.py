"""A message's store time reads the same, to the millisecond, whether it was consumed or read
by sequence (a direct get): ``trace`` builds one journey from both and compares them with a
scan. nats-py's own datetimes differ by a microsecond now and then (one goes through a
float), which moved a step across a millisecond boundary."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest
from nats.js.api import RawStreamMsg

from alert_timing.nats_server import EmbeddedNats
from alert_timing.ops.common import direct_stored_ms, stored_ms

pytestmark = [pytest.mark.integration]

MESSAGES = 3_000


def test_a_nanosecond_time_stamp_is_floored_to_its_millisecond() -> None:
    raw = RawStreamMsg(subject="t.x", seq=1, headers={"Nats-Time-Stamp": "2023-06-01T10:15:02.6849997Z"})
    assert direct_stored_ms(raw) == 1685614502684
    assert direct_stored_ms(RawStreamMsg(headers={"Nats-Time-Stamp": "2023-06-01T10:15:02Z"})) == 1685614502000


async def test_consumed_and_direct_store_times_agree(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "jetstream") as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="TIMES", subjects=["times.>"], allow_direct=True)
            for _ in range(MESSAGES):
                await js.publish("times.x", b"x")
            sub = await js.pull_subscribe("times.x", "times")
            seen = 0
            while seen < MESSAGES:
                for msg in await sub.fetch(500, timeout=5):
                    seen += 1
                    raw = await js.get_msg("TIMES", msg.metadata.sequence.stream, direct=True)
                    assert stored_ms(msg) == direct_stored_ms(raw), (msg.reply, raw.headers)
                    await msg.ack()
        finally:
            await nc.close()

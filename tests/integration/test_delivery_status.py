"""A quarantined window file set is counted where operators look: the deliverer's backlog, stored
in a real JetStream, read back by `alert-timing status` (text and --json, and a problem line), and
AST_OUT created by the bootstrap keeps the delivery receipts for the delivery horizon."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from alert_timing.nats_server import EmbeddedNats
from alert_timing.supervisor import run_bootstrap
from services.metrics.delivery import Deliverer, DirectoryLanding
from shared import bus
from shared import subjects as s
from shared.settings import load
from tests.harness.delivery import DAY, write_set

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("alert-timing")


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    nats_server = EmbeddedNats(tmp_path / "jetstream")
    nats_server.start()
    run_bootstrap(load(nats_url=nats_server.url, data_dir=str(tmp_path)))
    yield nats_server
    nats_server.stop()


async def deliver_once(url: str, data: Path, out: Path) -> int:
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10)

    async def publish(messages: list[bus.Outgoing]) -> None:
        await bus.publish_all(js, messages, 10)

    async def read_delivered(partition: int) -> set[str]:
        return set()

    try:
        return await Deliverer(DirectoryLanding(out), data, [0], publish, read_delivered,
                               horizon_days=100_000).deliver_pending()
    finally:
        await nc.close()


def test_status_counts_a_quarantined_set(server: EmbeddedNats, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    held, later = "ast_20230601T1015_r1", "ast_20230601T1030_r1"
    write_set(data, held)
    write_set(data, later)
    (out / f"date={DAY}").mkdir(parents=True)
    (out / f"date={DAY}" / f"{held}.csv").write_text("theirs\n")
    assert asyncio.run(deliver_once(server.url, data, out)) == 1
    env_url = ["--nats-url", server.url]
    done = subprocess.run([str(CLI), "status", "--json", *env_url], capture_output=True, text=True, timeout=60)
    result = json.loads(done.stdout)
    [delivery] = result["delivery"]
    assert (delivery["pending"], delivery["quarantined"], delivery["quarantined_file_sets"]) == (0, 1, [held])
    assert any("quarantined" in p and held in p for p in result["problems"])
    assert done.returncode == 1
    text = subprocess.run([str(CLI), "status", *env_url], capture_output=True, text=True, timeout=60).stdout
    assert "1 delivered, 1 quarantined" in text and held in text


def test_ast_out_keeps_receipts_for_the_delivery_horizon(server: EmbeddedNats) -> None:
    async def max_age() -> float:
        nc = await nats.connect(server.url)
        try:
            info = await nc.jetstream().stream_info(s.STREAM_OUT)
            return float(info.config.max_age or 0)
        finally:
            await nc.close()

    settings = load(nats_url=server.url)
    assert asyncio.run(max_age()) >= settings.delivery_horizon_days * 86_400 + bus.RECEIPT_MARGIN_S

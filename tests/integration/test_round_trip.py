"""A round trip whose PONG comes after its timeout leaves the connection reading: the server is
paused (SIGSTOP) while the acks' round trip waits, and resumed after it timed out. With nats-py's
``flush(timeout)`` the late PONG ends the client's read loop, and the connection delivers nothing
more until a reconnect minutes later."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from alert_timing.nats_server import EmbeddedNats
from shared.roundtrip import round_trip

pytestmark = [pytest.mark.integration]


async def _late_pong(tmp_path: Path, wait: Callable[[Client], Awaitable[None]]) -> bytes | None:
    """Pause the server, let ``wait`` time out, resume it; what the connection reads after."""
    with EmbeddedNats(tmp_path / "jetstream") as server:
        assert server.process is not None
        nc = await nats.connect(server.url, allow_reconnect=False)
        try:
            sub = await nc.subscribe("after.pong")
            os.kill(server.process.pid, signal.SIGSTOP)
            await asyncio.to_thread(os.waitpid, server.process.pid, os.WUNTRACED)  # once it is stopped, not before
            try:
                with pytest.raises(TimeoutError):  # nats-py's flush timeout is a TimeoutError too
                    await wait(nc)
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            await nc.publish("after.pong", b"still reading")
            try:
                return (await sub.next_msg(timeout=5)).data
            except nats.errors.TimeoutError:
                return None
        finally:
            await nc.close()


async def test_a_late_pong_leaves_the_connection_reading(tmp_path: Path) -> None:
    assert await _late_pong(tmp_path, lambda nc: round_trip(nc, 0.3)) == b"still reading"


async def test_nats_py_flush_with_a_late_pong_stops_reading(tmp_path: Path) -> None:
    """Why ``round_trip`` exists: the same with nats-py's own flush. If a nats-py release fixes
    this, this test fails and ``round_trip`` can go."""
    assert await _late_pong(tmp_path, lambda nc: nc.flush(timeout=0.3)) is None  # type: ignore[arg-type]

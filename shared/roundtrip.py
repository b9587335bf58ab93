"""A PING/PONG round trip that a late PONG cannot break: what was written before it (acks, plain
publishes) has reached the server once it returns.

nats-py's ``Client.flush(timeout)`` queues a future for the PONG and, when the timeout passes,
cancels that future but leaves it queued. The PONG that comes after (the process was paused, or
the server or the network was slow) is then set on a cancelled future: ``InvalidStateError`` in
the client's read loop, which ends it. The connection then reads nothing more (no deliveries, no
acks, no replies) until the client's stale-connection check reconnects, minutes later, and the
messages it held meanwhile reach ``max_deliver`` and are dead-lettered. Seen with dsp-mapping
paused 35 s (SIGSTOP) while a flush was waiting.

Here nats-py's own flush is given a timeout far beyond any wait (``ORPHAN_TIMEOUT_S``) and is
waited for through a shield: when our timeout passes, the round trip goes on by itself, and the
late PONG completes it normally. A reconnect drops the queued futures, so an orphan never sees a
PONG meant for another; it ends with its own timeout.
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client

#: nats-py's timeout for the round trip itself: beyond the stale-connection check (which
#: reconnects after its missed pings, dropping the queued PONG futures), so it never expires
#: while its future is still queued on a live connection.
ORPHAN_TIMEOUT_S = 3600


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # an orphan's failure is nobody's: read so asyncio does not log it


async def round_trip(nc: Client, timeout: float) -> None:
    """Return once the server has answered a PING sent now; ``TimeoutError`` after ``timeout``
    seconds (the round trip itself is not cancelled); nats-py's errors as they come."""
    task = asyncio.ensure_future(nc.flush(timeout=ORPHAN_TIMEOUT_S))
    task.add_done_callback(_retrieve)
    await asyncio.wait_for(asyncio.shield(task), timeout)

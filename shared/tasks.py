"""Stopping a background task for certain (``stop_tasks``).

On Python 3.11, ``asyncio.wait_for`` returns a result that arrived in the same moment as a
cancellation and drops the cancellation (fixed in 3.12). nats-py waits for every request's
reply that way, so a loop cancelled just as a reply came goes on as if nothing happened: a
single ``cancel()`` then waits for ever for a task that never ends (a service that never stops).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog

__all__ = ["stop_tasks"]

log = structlog.get_logger()


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], grace_s: float = 5.0) -> None:
    """Cancel the tasks and return once every one has ended. A task still running ``grace_s``
    after its cancellation (its cancellation was dropped, see above) is cancelled again;
    a task that is merely cleaning up within ``grace_s`` is left to finish. The tasks'
    results and failures are theirs: not raised here."""
    tasks = list(tasks)
    running = {t for t in tasks if not t.done()}
    for task in running:
        task.cancel()
    while running:
        _, running = await asyncio.wait(running, timeout=grace_s)
        for task in running:
            log.warning("task still running after its cancellation; cancelling it again", task=task.get_name())
            task.cancel()
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: asyncio does not report it as lost

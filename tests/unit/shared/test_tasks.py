"""``stop_tasks`` ends a task whose cancellation was dropped (Python 3.11's ``wait_for``
returns a reply that came in the same moment as the cancellation)."""

from __future__ import annotations

import asyncio
import sys

from shared.tasks import stop_tasks


async def _loop_after_a_request(reply: asyncio.Future[bytes]) -> None:
    """A background loop as the services have them: a request's reply, then the next wait."""
    await asyncio.wait_for(reply, 10)
    await asyncio.Event().wait()


async def _cancel_as_the_reply_comes() -> asyncio.Task[None]:
    reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_loop_after_a_request(reply))
    await asyncio.sleep(0)  # one step: the task now waits in wait_for
    reply.set_result(b"+OK")  # the reply arrives ...
    task.cancel()  # ... in the same moment as the cancellation
    return task


async def test_a_dropped_cancellation_is_not_the_end_of_stopping() -> None:
    task = await _cancel_as_the_reply_comes()
    await asyncio.wait([task], timeout=0.2)
    if sys.version_info < (3, 12):
        assert not task.done(), "on 3.11 the cancellation is dropped and the loop goes on"
    await stop_tasks([task], grace_s=0.1)
    assert task.cancelled()


async def test_tasks_that_end_on_cancel_are_stopped_at_once_and_their_errors_kept_quiet() -> None:
    async def forever() -> None:
        await asyncio.sleep(3600)

    async def failing() -> None:
        raise RuntimeError("failed before the stop")

    slow, failed = asyncio.create_task(forever()), asyncio.create_task(failing())
    await asyncio.wait([failed])
    await stop_tasks([slow, failed], grace_s=3600)  # a second round would wait an hour
    assert slow.cancelled()
    assert isinstance(failed.exception(), RuntimeError)


async def test_cleanup_within_the_grace_is_not_interrupted() -> None:
    cleaned = asyncio.Event()

    async def with_cleanup() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)  # closing a connection, say
            cleaned.set()

    task = asyncio.create_task(with_cleanup())
    await asyncio.sleep(0)
    await stop_tasks([task], grace_s=60)
    assert cleaned.is_set()

"""dmem.threads: worker threads settle an event loop's futures through its inbox."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import weakref
from typing import Any

import pytest
from dmem.threads import _CallSoonInbox, _EventfdInbox, loop_inbox


def _futures(loop: asyncio.AbstractEventLoop, n: int) -> list[asyncio.Future[Any]]:
    return [loop.create_future() for _ in range(n)]


async def _exercise(inbox: Any) -> None:
    """post and post_many from another thread: values, errors, order, done futures left alone."""
    loop = asyncio.get_running_loop()
    one, failed, cancelled, *many = _futures(loop, 13)
    cancelled.cancel()
    settled_order: list[int] = []

    def record(i: int) -> Any:
        return lambda _future: settled_order.append(i)

    for i, future in enumerate(many):
        future.add_done_callback(record(i))
    await asyncio.to_thread(inbox.post, one, None, 42)
    await asyncio.to_thread(inbox.post, failed, ValueError("boom"), None)
    await asyncio.to_thread(inbox.post, cancelled, None, "late")  # dropped quietly
    await asyncio.to_thread(inbox.post_many, [(f, None, i) for i, f in enumerate(many)])
    assert await one == 42
    with pytest.raises(ValueError, match="boom"):
        await failed
    assert cancelled.cancelled()
    assert await asyncio.gather(*many) == list(range(10))
    await asyncio.sleep(0)
    assert settled_order == list(range(10))


@pytest.mark.skipif(sys.platform != "linux", reason="eventfd is Linux-only")
async def test_eventfd_inbox_settles_futures() -> None:
    inbox = loop_inbox(asyncio.get_running_loop())
    assert isinstance(inbox, _EventfdInbox)  # the fast one, on Linux
    assert loop_inbox(asyncio.get_running_loop()) is inbox  # one per loop
    await _exercise(inbox)


async def test_call_soon_inbox_settles_futures() -> None:
    await _exercise(_CallSoonInbox(asyncio.get_running_loop()))


def test_each_loop_has_its_own_inbox_and_a_late_post_is_harmless() -> None:
    held: list[Any] = []

    async def grab() -> Any:
        loop = asyncio.get_running_loop()
        held.append(loop.create_future())
        return loop_inbox(loop)

    first = asyncio.run(grab())
    second = asyncio.run(grab())
    assert first is not second
    # Both loops are closed: a worker finishing late must not raise or write to a reused fd.
    first.post(held[0], None, 1)
    second.post_many([(held[1], None, 2)])


def test_call_soon_inbox_holds_its_loop_weakly() -> None:
    other = asyncio.new_event_loop()
    gone = weakref.ref(other)
    orphan = _CallSoonInbox(other)
    other.close()
    del other
    gc.collect()
    assert gone() is None  # the inbox did not keep it alive
    spare = asyncio.new_event_loop()
    try:
        orphan.post(spare.create_future(), None, 1)  # and posting to it is a quiet no-op
        orphan.post_many([])
    finally:
        spare.close()


async def test_many_threads_post_at_once() -> None:
    loop = asyncio.get_running_loop()
    inbox = loop_inbox(loop)
    futures = _futures(loop, 400)

    def worker(part: list[asyncio.Future[Any]], base: int) -> None:
        for i, future in enumerate(part):
            inbox.post(future, None, base + i)

    threads = [
        threading.Thread(target=worker, args=(futures[k * 100 : (k + 1) * 100], k * 100))
        for k in range(4)
    ]
    for thread in threads:
        thread.start()
    assert await asyncio.wait_for(asyncio.gather(*futures), 5) == list(range(400))
    for thread in threads:
        thread.join()

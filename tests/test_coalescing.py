"""dmem.coalescing.Coalescer: lone calls run at once, calls made while every slot is busy
run together, and each caller gets exactly its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest
from dmem import InvalidArgumentError
from dmem.coalescing import Coalescer

T = TypeVar("T")


class Backend:
    """A stand-in for a server round trip: each call or batch takes one sleep of ``delay``
    (the Coalescer is pure asyncio; the providers' tests run it against real servers)."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.batches: list[list[int]] = []
        self.lone: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def one(self, item: int) -> int:
        self.lone.append(item)
        return await self._round_trip(lambda: item * 10)

    async def batch(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(items)

        def answer() -> list[int | BaseException]:
            return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]

        return await self._round_trip(answer)

    async def _round_trip(self, answer: Callable[[], T]) -> T:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return answer()
        finally:
            self.in_flight -= 1


async def call(coalescer: Coalescer[int, int], backend: Backend, item: int) -> int:
    if coalescer.take():
        try:
            return await backend.one(item)
        finally:
            coalescer.give()
    return await coalescer.submit(item)


async def test_a_lone_call_runs_at_once_without_a_batch() -> None:
    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(backend.batch, slots=2)
    assert await call(coalescer, backend, 1) == 10
    assert await call(coalescer, backend, 2) == 20
    assert backend.lone == [1, 2] and backend.batches == []
    assert coalescer.batches == 0


async def test_calls_made_while_busy_run_together_in_order() -> None:
    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(backend.batch, slots=2)
    results = await asyncio.gather(*(call(coalescer, backend, i) for i in range(100)))
    assert results == [i * 10 for i in range(100)]
    assert backend.lone == [0, 1]  # the two slots
    assert backend.batches == [list(range(2, 100))]  # the rest, together, in arrival order
    assert backend.most_in_flight <= 2
    assert (coalescer.batches, coalescer.items) == (1, 98)


async def test_max_batch_splits_and_slots_bound_what_runs_at_once() -> None:
    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(backend.batch, slots=1, max_batch=10)
    results = await asyncio.gather(*(call(coalescer, backend, i) for i in range(31)))
    assert results == [i * 10 for i in range(31)]
    assert backend.lone == [0]
    assert [len(b) for b in backend.batches] == [10, 10, 10]
    assert backend.most_in_flight == 1


async def test_each_caller_gets_its_own_outcome_and_errors_stay_their_own() -> None:
    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(backend.batch, slots=1)
    items = [5, -1, 6, -2, 7]
    outcomes = await asyncio.gather(
        *(call(coalescer, backend, i) for i in items), return_exceptions=True
    )
    assert outcomes[0] == 50  # alone
    assert outcomes[2] == 60 and outcomes[4] == 70
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "bad -1"
    assert isinstance(outcomes[3], ValueError) and str(outcomes[3]) == "bad -2"


async def test_a_cancelled_waiter_is_left_out_and_the_others_are_served() -> None:
    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(backend.batch, slots=1)
    tasks = [asyncio.create_task(call(coalescer, backend, i)) for i in range(6)]
    await asyncio.sleep(0)  # all have made their call: 0 runs, 1-5 wait
    tasks[3].cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(outcomes[3], asyncio.CancelledError)
    assert [outcomes[i] for i in (0, 1, 2, 4, 5)] == [0, 10, 20, 40, 50]
    assert backend.batches == [[1, 2, 4, 5]]  # 3 was never sent


async def test_a_caller_cancelled_mid_batch_does_not_disturb_the_batch() -> None:
    backend = Backend(delay=0.05)
    coalescer: Coalescer[int, int] = Coalescer(backend.batch, slots=1)
    tasks = [asyncio.create_task(call(coalescer, backend, i)) for i in range(4)]
    await asyncio.sleep(0.07)  # the lone call is done; the batch of 1-3 is in flight
    assert backend.batches == [[1, 2, 3]]
    tasks[2].cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert outcomes[0] == 0 and outcomes[1] == 10 and outcomes[3] == 30
    assert isinstance(outcomes[2], asyncio.CancelledError)
    assert await call(coalescer, backend, 9) == 90  # the slot came back


async def test_a_runner_that_raises_fails_its_batch_only() -> None:
    async def broken(items: list[int]) -> Sequence[int]:
        await asyncio.sleep(0.01)
        if 13 in items:
            raise RuntimeError("runner bug")
        return [i for i in items]

    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(broken, slots=1)
    outcomes = await asyncio.gather(
        *(call(coalescer, backend, i) for i in (1, 13, 14)), return_exceptions=True
    )
    assert outcomes[0] == 10
    assert all(isinstance(o, RuntimeError) for o in outcomes[1:])
    assert await call(coalescer, backend, 2) == 20


async def test_a_runner_with_the_wrong_number_of_outcomes_is_an_error() -> None:
    async def short(items: list[int]) -> Sequence[int]:
        return items[:-1]

    backend = Backend()
    coalescer: Coalescer[int, int] = Coalescer(short, slots=1)
    outcomes = await asyncio.gather(
        *(call(coalescer, backend, i) for i in range(3)), return_exceptions=True
    )
    assert outcomes[0] == 0
    assert all(isinstance(o, RuntimeError) and "2 calls" in str(o) for o in outcomes[1:])


async def test_aclose_waits_for_running_batches() -> None:
    backend = Backend(delay=0.05)
    coalescer: Coalescer[int, int] = Coalescer(backend.batch, slots=1)
    tasks = [asyncio.create_task(call(coalescer, backend, i)) for i in range(3)]
    await asyncio.sleep(0.06)  # the batch of 1-2 runs
    await coalescer.aclose()
    assert all(task.done() for task in tasks[1:])
    assert [t.result() for t in tasks] == [0, 10, 20]


def test_bad_sizes_are_refused() -> None:
    async def runner(items: list[int]) -> Sequence[int]:
        return items

    with pytest.raises(InvalidArgumentError):
        Coalescer(runner, slots=0)
    with pytest.raises(InvalidArgumentError):
        Coalescer(runner, max_batch=0)


async def test_every_free_slot_takes_a_batch_when_more_than_one_waits() -> None:
    backend = Backend(delay=0.02)
    coalescer: Coalescer[int, int] = Coalescer(backend.batch, slots=2, max_batch=5)
    results = await asyncio.gather(*(call(coalescer, backend, i) for i in range(22)))
    assert results == [i * 10 for i in range(22)]
    # The two lone calls end together; both slots then take a batch of five at once.
    assert [len(b) for b in backend.batches] == [5, 5, 5, 5]
    assert backend.most_in_flight == 2

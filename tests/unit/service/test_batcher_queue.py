"""The micro-batcher joins concurrent callers, keeps order, bounds its queue, shares errors."""

from __future__ import annotations

import asyncio
import threading

import pytest

from fairgate.service._batcher import MicroBatcher, QueueFull


class Recorder:
    """A batch function that blocks until released, so tests control what queues up."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.release.wait(5)
        self.batches.append(list(items))
        return [i * 10 for i in items]


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


def test_lone_request_runs_alone_and_results_map_back() -> None:
    run = Recorder()
    batcher = MicroBatcher(run=run, max_batch_size=8, max_queue_items=100)

    assert asyncio.run(batcher.submit([1, 2, 3])) == [10, 20, 30]
    assert run.batches == [[1, 2, 3]]


def test_callers_arriving_during_a_batch_share_the_next_one() -> None:
    async def scenario() -> tuple[list[list[int]], list[list[int]]]:
        run = Recorder()
        run.release.clear()
        batcher = MicroBatcher(run=run, max_batch_size=8, max_queue_items=100)
        first = asyncio.create_task(batcher.submit([0]))
        await _settle()  # the first batch is now running (blocked)
        rest = [asyncio.create_task(batcher.submit([i])) for i in range(1, 6)]
        await _settle()
        run.release.set()
        results = [await first] + [await task for task in rest]
        return run.batches, results

    batches, results = asyncio.run(scenario())
    assert batches == [[0], [1, 2, 3, 4, 5]]
    assert results == [[0], [10], [20], [30], [40], [50]]


def test_batches_respect_the_size_limit_without_splitting_a_request() -> None:
    async def scenario() -> list[list[int]]:
        run = Recorder()
        run.release.clear()
        batcher = MicroBatcher(run=run, max_batch_size=4, max_queue_items=100)
        blocker = asyncio.create_task(batcher.submit([0]))
        await _settle()
        tasks = [asyncio.create_task(batcher.submit(items)) for items in ([1, 2, 3], [4, 5], [6], [7, 8, 9, 10, 11])]
        await _settle()
        run.release.set()
        await blocker
        for task in tasks:
            await task
        return run.batches

    assert asyncio.run(scenario()) == [[0], [1, 2, 3], [4, 5, 6], [7, 8, 9, 10, 11]]


def test_full_queue_refuses_at_once_naming_the_limit() -> None:
    async def scenario() -> str:
        run = Recorder()
        run.release.clear()
        batcher = MicroBatcher(run=run, max_batch_size=2, max_queue_items=3)
        running = asyncio.create_task(batcher.submit([0]))
        await _settle()
        queued = asyncio.create_task(batcher.submit([1, 2, 3]))
        await _settle()
        with pytest.raises(QueueFull) as caught:
            await batcher.submit([4])
        run.release.set()
        await running
        await queued
        return str(caught.value)

    message = asyncio.run(scenario())
    assert "3 items queued, limit 3" in message and "FAIRGATE_MAX_QUEUE_ITEMS" in message


def test_a_failing_batch_fails_every_caller_in_it_and_the_next_batch_still_runs() -> None:
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        if 13 in items:
            raise RuntimeError("model down")
        return items

    async def scenario() -> None:
        batcher = MicroBatcher(run=run, max_batch_size=8, max_queue_items=100)
        with pytest.raises(RuntimeError, match="model down"):
            await batcher.submit([13])
        assert await batcher.submit([1]) == [1]

    asyncio.run(scenario())
    assert calls == [[13], [1]]

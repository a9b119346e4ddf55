"""DynamicBatcher on its own, with a recording encode function: budgets, order, failures, shutdown."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from tdro_suite.serve.batcher import BatcherStopped, DynamicBatcher, QueueFull


class Recorder:
    """Encodes text i as [len(text), hash] and records every batch; can hold the model thread."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.tokens: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.threads: set[str] = set()

    def __call__(self, texts: list[str], tokens: list[int]) -> np.ndarray:
        assert len(tokens) == len(texts)
        assert self.release.wait(10)
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(texts))
        self.tokens.append(list(tokens))
        return np.array([[len(t), sum(map(ord, t))] for t in texts], dtype=np.float32)


def _expected(texts: list[str]) -> np.ndarray:
    return np.array([[len(t), sum(map(ord, t))] for t in texts], dtype=np.float32)


def run(coro):
    return asyncio.run(coro)


def test_requests_merge_under_size_and_token_budgets_and_keep_their_rows() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = DynamicBatcher(model, max_batch_size=4, max_batch_tokens=40, max_queue_inputs=100)
        batcher.start()
        model.release.clear()
        warmup = asyncio.create_task(batcher.submit(["w"], [1]))
        await asyncio.sleep(0.05)  # the model thread is now busy with the warm-up
        requests = [["a", "bb", "ccc"], ["dddd"], ["e" * 5, "f" * 6], ["g" * 7]]
        tokens = [[5, 5, 5], [5], [20, 5], [5]]
        tasks = [asyncio.create_task(batcher.submit(t, n)) for t, n in zip(requests, tokens, strict=True)]
        await asyncio.sleep(0.05)
        assert batcher.pending == 7
        model.release.set()
        results = await asyncio.gather(warmup, *tasks)
        for texts, vectors in zip(requests, results[1:], strict=True):
            np.testing.assert_array_equal(vectors, _expected(texts))
        # size 4 cuts after "dddd" (splitting no request); then 2 x 20 padded tokens fit the budget of 40
        # but 3 x 20 does not, so "g"*7 waits for the next batch; FIFO order is kept throughout
        assert model.batches == [["w"], ["a", "bb", "ccc", "dddd"], ["e" * 5, "f" * 6], ["g" * 7]]
        assert model.tokens == [[1], [5, 5, 5, 5], [20, 5], [5]]
        assert model.threads == {next(iter(model.threads))} and next(iter(model.threads)).startswith("tdro-encode")
        await batcher.stop()

    run(scenario())


def test_queue_bound_cancellation_failure_and_shutdown() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = DynamicBatcher(model, max_batch_size=8, max_batch_tokens=1000, max_queue_inputs=3)
        batcher.start()
        model.release.clear()
        busy = asyncio.create_task(batcher.submit(["busy"], [1]))
        await asyncio.sleep(0.05)
        cancelled = asyncio.create_task(batcher.submit(["x", "y"], [1, 1]))
        kept = asyncio.create_task(batcher.submit(["z"], [1]))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull, match="max_queue_inputs"):
            await batcher.submit(["overflow"], [1])
        cancelled.cancel()
        model.release.set()
        assert (await busy).shape == (1, 2)
        assert (await kept).shape == (1, 2)
        assert ["x", "y"] not in model.batches and ["z"] in model.batches  # a cancelled request is skipped
        assert batcher.pending == 0

        def broken(texts: list[str], tokens: list[int]) -> np.ndarray:
            raise RuntimeError("model exploded")

        batcher.encode = broken
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.submit(["boom"], [1])

        batcher.encode = model
        model.release.clear()
        first = asyncio.create_task(batcher.submit(["held"], [1]))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(batcher.submit(["never"], [1]))
        await asyncio.sleep(0.01)
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0.01)
        model.release.set()
        await stopping
        with pytest.raises(BatcherStopped):
            await queued
        with pytest.raises((asyncio.CancelledError, BatcherStopped)):
            await first
        with pytest.raises(BatcherStopped):
            await batcher.submit(["late"], [1])

    run(scenario())


def test_length_groups_keep_similar_lengths_together() -> None:
    from tdro_suite.serve.service import length_groups

    tokens = [10, 120, 12, 9, 110, 30, 11]
    groups = length_groups(tokens, max_size=64)
    # 120 and 110 together; 30 alone (12 is 18 tokens shorter: over the 16-token slack); the short ones together
    assert groups == [[1, 4], [5], [2, 6, 0, 3]]
    assert sorted(i for g in groups for i in g) == list(range(len(tokens)))
    assert length_groups([5] * 5, max_size=2) == [[0, 1], [2, 3], [4]]


def test_two_streams_split_a_queue_between_them_and_stop_fails_both_calls() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = DynamicBatcher(model, max_batch_size=64, max_batch_tokens=10_000, max_queue_inputs=100, streams=2)
        batcher.start()
        model.release.clear()
        texts = [f"t{i}" for i in range(40)]
        tasks = [asyncio.create_task(batcher.submit([t], [1])) for t in texts]
        await asyncio.sleep(0.05)
        assert batcher.pending == 0  # both streams hold a call: half the queue each, not all of it in one
        model.release.set()
        results = await asyncio.gather(*tasks)
        for text, vectors in zip(texts, results, strict=True):
            np.testing.assert_array_equal(vectors, _expected([text]))
        assert sorted(map(len, model.batches)) == [20, 20] and len(model.threads) == 2
        assert sorted(t for batch in model.batches for t in batch) == sorted(texts)

        model.release.clear()
        held = [asyncio.create_task(batcher.submit([t], [1])) for t in texts[:32]]
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0.01)
        model.release.set()
        await stopping
        for task in held:
            with pytest.raises((asyncio.CancelledError, BatcherStopped)):
                await task

    run(scenario())

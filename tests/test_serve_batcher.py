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


def _plan_cost(passes: list[list[int]], tokens: list[int], overhead: float) -> float:
    return sum(overhead + len(rows) * max(tokens[i] for i in rows) for rows in passes)


def _set_partitions(items: list[int]):
    """Every way of splitting `items` into non-empty groups (Bell(n) of them)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _set_partitions(rest):
        for k in range(len(partition)):
            yield [*partition[:k], [first, *partition[k]], *partition[k + 1 :]]
        yield [[first], *partition]


@pytest.mark.parametrize("overhead", [0.0, 5.0, 30.0, 1000.0])
@pytest.mark.parametrize("seed", range(4))
def test_plan_passes_is_the_cheapest_of_every_possible_split(overhead: float, seed: int) -> None:
    """Against brute force over all set partitions (not only contiguous runs of the sorted texts)."""
    import random

    from tdro_suite.serve.pass_plan import plan_passes

    rng = random.Random(seed)
    tokens = [rng.choice([3, 10, 11, 12, 40, 90, 200]) for _ in range(7)]
    max_rows = 3
    passes = plan_passes(tokens, max_rows, overhead)
    assert sorted(i for rows in passes for i in rows) == list(range(len(tokens)))
    assert all(len(rows) <= max_rows for rows in passes)
    best = min(_plan_cost(p, tokens, overhead) for p in _set_partitions(list(range(len(tokens))))
               if all(len(g) <= max_rows for g in p))
    assert _plan_cost(passes, tokens, overhead) == pytest.approx(best)


def test_plan_passes_trades_passes_for_padding_by_the_overhead() -> None:
    from tdro_suite.serve.pass_plan import plan_passes

    tokens = [10, 120, 12, 9, 110, 30, 11]
    # a pass costs 4 tokens: 120 and 110 apart (8 + 230 < 4 + 240), the four short ones together (4 + 48 < 16 + 42)
    assert plan_passes(tokens, 64, overhead=4.0) == [[1], [4], [5], [2, 6, 0, 3]]
    # 20 tokens: 120 and 110 share a pass (20 + 240 < 40 + 230); 30 still alone
    assert plan_passes(tokens, 64, overhead=20.0) == [[1, 4], [5], [2, 6, 0, 3]]
    # 100 tokens: 30 joins the short ones (100 + 150 < 200 + 78)
    assert plan_passes(tokens, 64, overhead=100.0) == [[1, 4], [5, 2, 6, 0, 3]]
    # passes dearer than any padding: one pass, unless max_rows splits it
    assert plan_passes(tokens, 64, overhead=10_000.0) == [[1, 4, 5, 2, 6, 0, 3]]
    assert [len(p) for p in plan_passes([5] * 5, 2, overhead=10_000.0)] == [1, 2, 2]


def test_pass_overhead_is_the_fixed_cost_over_the_cost_per_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose pass takes 2 ms + 0.01 ms per padded token: the fixed part is 200 tokens."""
    from tdro_suite.serve import pass_plan

    clock = [0.0]
    monkeypatch.setattr(pass_plan.time, "perf_counter", lambda: clock[0])

    def run_pass(texts: list[str]) -> None:
        clock[0] += 0.002 + 0.00001 * len(texts) * len(texts[0].split())

    assert pass_plan.pass_overhead(run_pass) == pytest.approx(200.0)
    monkeypatch.setattr(pass_plan.time, "perf_counter", lambda: clock[0])
    assert pass_plan.pass_overhead(lambda texts: None) == pass_plan.MAX_OVERHEAD  # no cost per token at all


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

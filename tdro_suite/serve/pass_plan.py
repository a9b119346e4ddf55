"""How one model call of the server splits its inputs into padded forward passes.

A call holds whatever requests were queued (on a CPU with two model streams, about a third of the
inputs in flight): short and long texts in arrival order. Each forward pass costs a fixed part (on a
CPU: Python dispatch and packing every weight matrix, whatever the batch; on a GPU: kernel launches)
plus a part per padded token. Too many passes pay the fixed part often; too few pad short texts to
long ones. `plan_passes` finds the cheapest split exactly: some optimal plan is a set of contiguous
runs of the texts sorted by length (keep the pass sizes and deal the texts out longest first to the
passes in order of their longest text: no pass's longest text grows), and a dynamic programme over
the cut points finds the best runs (O(n x max_rows); a few milliseconds for a call of 256; the tests
check it against every possible split of small calls).

The fixed part, in padded tokens, is measured once per server on the loaded model (`pass_overhead`,
eight short passes at start), so the same rule serves MiniLM on a CPU core (45-77 tokens measured:
small passes are fine) and a model on a GPU, where launching kernels dominates a small pass, so the
estimate is large and passes are few and full (not measured here: no GPU).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

MIN_OVERHEAD, MAX_OVERHEAD = 1.0, 8192.0  # measured overheads are clipped to this range (timer noise)
SMALL_PASS = (1, 8)  # rows, tokens per row of the two passes that are timed
LARGE_PASS = (8, 32)


def plan_passes(tokens: Sequence[int], max_rows: int, overhead: float) -> list[list[int]]:
    """Positions of `tokens` grouped into forward passes, longest texts first, minimising
    `overhead` x passes + padded tokens (rows x longest row) with at most `max_rows` rows a pass."""
    order = np.argsort(-np.asarray(tokens, dtype=np.int64), kind="stable")
    lengths = np.asarray(tokens, dtype=np.float64)[order]
    n = len(order)
    best = np.zeros(n + 1)  # best[j]: cost of the first j texts (longest first)
    cut = np.zeros(n + 1, dtype=np.int64)  # where the last pass of that plan starts
    for end in range(1, n + 1):
        starts = np.arange(max(0, end - max_rows), end)
        costs = best[starts] + overhead + (end - starts) * lengths[starts]
        k = int(np.argmin(costs))
        best[end], cut[end] = costs[k], starts[k]
    passes: list[list[int]] = []
    end = n
    while end > 0:
        start = int(cut[end])
        passes.append(order[start:end].tolist())
        end = start
    return passes[::-1]


def pass_overhead(run_pass: Callable[[list[str]], object], repeats: int = 3) -> float:
    """The fixed cost of one forward pass in padded tokens, from the fastest of `repeats` timings of
    a small and a larger pass (`run_pass(texts)` runs exactly one padded pass).

    Texts are made of one repeated word, so each has about as many tokens as words with any tokenizer;
    the estimate only needs to be right within a factor of about two (the plan's cost is flat near
    its optimum).
    """

    def fastest(rows: int, words: int) -> float:
        texts = [" ".join(["hello"] * words)] * rows
        run_pass(texts)  # warm-up: first-use allocations and kernel choice
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            run_pass(texts)
            timings.append(time.perf_counter() - started)
        return min(timings)

    small_rows, small_words = SMALL_PASS
    large_rows, large_words = LARGE_PASS
    small, large = fastest(small_rows, small_words), fastest(large_rows, large_words)
    small_tokens, large_tokens = small_rows * small_words, large_rows * large_words
    per_token = (large - small) / (large_tokens - small_tokens)
    if per_token <= 0:
        return MAX_OVERHEAD  # the larger pass cost no more: the fixed part is all there is
    return float(np.clip(small / per_token - small_tokens, MIN_OVERHEAD, MAX_OVERHEAD))

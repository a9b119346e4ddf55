"""Homogeneous batches: every global batch (all ranks, all micro-batches of one optimizer step) is ONE task.

Why: with in-batch and cross-device negatives, passages from another task are trivially easy
negatives; drawing the whole global batch from one task keeps them informative (the paper's setup).

Determinism without shared state: the task of step s is a pure function of (seed, s), so every
rank picks the same task without communicating and the choice does not depend on how many steps ran
before a resume. Two task schedules:

- `random` (the default): an independent draw with the mixture's probabilities, from a generator
  seeded with (seed, s).
- `stratified`: the steps are cut into windows of W = ⌈1/p_min⌉ steps (the shortest in which every
  task is due at least once: K for a uniform mixture over K tasks). Each window's steps are
  apportioned to the tasks by largest remainder of W·p_k plus what the task is owed from the windows
  before (`StratifiedSchedule`), then put in a seeded random order. So after every window each task has
  had within one step of n·p_k of the n steps so far (exactly n·p_k when W·p is integral, as for uniform
  and top-p% mixtures). An independent draw over 40 steps and 13 tasks gives a task 3.1 ± 1.7 steps
  (binomial std), so how often a short fine-tune sees each task changes with the seed; stratified,
  the counts at every window's end are the same for every seed but for ties.

Within a task, examples are read in a permutation seeded by (seed, task, epoch); when a task runs
out mid-batch the batch is completed from the next epoch's fresh permutation. The step and per-task
cursors are the only state (`state_dict`), saved in checkpoints. Nothing is sampled inside dataloader
workers, so no RNG state is copied into them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from tdro_suite.data.mixture import largest_remainder

TaskScheduleName = Literal["random", "stratified"]


@dataclass(frozen=True)
class GlobalBatch:
    """The examples of one optimizer step: `indices` into task `task`, in global order."""

    step: int
    task: int
    indices: tuple[int, ...]

    def local_slice(self, rank: int, world_size: int, micro_step: int, grad_accumulation: int) -> slice:
        """Positions (into `indices`) of this rank's part of one micro-step.

        Layout: [micro 0: rank 0 | rank 1 | ...][micro 1: rank 0 | rank 1 | ...]...

        Each micro-step's examples over all ranks are contiguous, so P processes with batch B give
        the same micro-batches as 1 process with batch P·B (what the equivalence tests rely on).
        """
        per_micro = len(self.indices) // grad_accumulation
        per_rank = per_micro // world_size
        start = micro_step * per_micro + rank * per_rank
        return slice(start, start + per_rank)

    def micro_slice(self, micro_step: int, grad_accumulation: int) -> slice:
        """Positions of one micro-step over ALL ranks, in rank order (what a cross-device gather returns)."""
        return self.local_slice(0, 1, micro_step, grad_accumulation)


class StratifiedSchedule:
    """The task of every step such that each window of `window` steps follows the mixture as exactly as
    integer counts allow, in a seeded order within the window; a pure function of (weights, seed, step).

    Window j gives task k the quota q_k = W·p_k + owed_k (owed_k: n·p_k minus the steps k had in the n
    steps before, in (−1, 1)) and apportions its W steps by largest remainder, ties in a permutation seeded
    by (seed, j). W·p_k ≥ 1 keeps every quota of a task with p_k > 0 positive, so every count is ⌊q_k⌋ or
    ⌈q_k⌉ and what is owed stays in (−1, 1): the counts never drift from n·p over a long run. Windows are
    computed in order and cached; a resumed run recomputes them from the seed, so it continues the same
    schedule.
    """

    def __init__(self, weights: Sequence[float], seed: int) -> None:
        exact = [Fraction(float(w)) for w in weights]
        total = sum(exact)
        self.probabilities = [w / total for w in exact]
        self.window = math.ceil(1 / min(p for p in self.probabilities if p > 0))
        self.seed = int(seed)
        self._windows: list[list[int]] = []
        self._owed = [Fraction(0)] * len(exact)

    def window_counts(self, index: int) -> list[int]:
        """How many steps of window `index` go to each task."""
        self.task_of_step(index * self.window)
        return np.bincount(self._windows[index], minlength=len(self.probabilities)).tolist()

    def task_of_step(self, step: int) -> int:
        window, offset = divmod(step, self.window)
        while len(self._windows) <= window:
            self._windows.append(self._next_window(len(self._windows)))
        return self._windows[window][offset]

    def _next_window(self, index: int) -> list[int]:
        quotas = [self.window * p + owed for p, owed in zip(self.probabilities, self._owed, strict=True)]
        ties = np.random.default_rng([self.seed, 2, index]).permutation(len(quotas)).tolist()
        counts = largest_remainder(self.window, quotas, ties)
        self._owed = [q - c for q, c in zip(quotas, counts, strict=True)]
        steps = np.repeat(np.arange(len(counts)), counts)
        return [int(k) for k in np.random.default_rng([self.seed, 3, index]).permutation(steps)]


class HomogeneousBatchSampler:
    """Draw (task, example indices) for each optimizer step from a mixture over tasks."""

    def __init__(
        self, task_sizes: Sequence[int], weights: Sequence[float], global_batch_size: int, seed: int,
        schedule: TaskScheduleName = "random",
    ) -> None:
        if len(task_sizes) != len(weights) or not task_sizes:
            raise ValueError("task_sizes and weights must be non-empty and of equal length")
        if any(s <= 0 for s in task_sizes):
            raise ValueError(f"every task needs at least one example, got sizes {list(task_sizes)}")
        w = np.asarray(weights, dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be ≥ 0 with a positive sum, got {list(weights)}")
        self.task_sizes = [int(s) for s in task_sizes]
        self.weights = w / w.sum()
        self.global_batch_size = int(global_batch_size)
        self.seed = int(seed)
        self.step = 0
        self.cursors = [0] * len(task_sizes)
        self.epochs = [0] * len(task_sizes)
        self._orders: dict[int, tuple[int, np.ndarray]] = {}
        if schedule not in ("random", "stratified"):
            raise ValueError(f"task schedule must be 'random' or 'stratified', got {schedule!r}")
        self.stratified = StratifiedSchedule(self.weights, self.seed) if schedule == "stratified" else None

    def task_of_step(self, step: int) -> int:
        """The task of optimizer step `step`: a pure function of (seed, step), identical on every rank."""
        if self.stratified is not None:
            return self.stratified.task_of_step(step)
        rng = np.random.default_rng([self.seed, 0, step])
        return int(rng.choice(len(self.weights), p=self.weights))

    def _permutation(self, task: int, epoch: int) -> np.ndarray:
        cached = self._orders.get(task)
        if cached is None or cached[0] != epoch:
            order = np.random.default_rng([self.seed, 1, task, epoch]).permutation(self.task_sizes[task])
            self._orders[task] = cached = (epoch, order)
        return cached[1]

    def next_batch(self) -> GlobalBatch:
        """The next step's global batch; a task that runs out is reshuffled (next epoch) and continues."""
        task = self.task_of_step(self.step)
        taken: list[int] = []
        while len(taken) < self.global_batch_size:
            order = self._permutation(task, self.epochs[task])
            cursor = self.cursors[task]
            chunk = order[cursor : cursor + self.global_batch_size - len(taken)]
            taken.extend(int(i) for i in chunk)
            self.cursors[task] = cursor + len(chunk)
            if self.cursors[task] >= self.task_sizes[task]:
                self.cursors[task] = 0
                self.epochs[task] += 1
        batch = GlobalBatch(self.step, task, tuple(taken))
        self.step += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "cursors": list(self.cursors), "epochs": list(self.epochs), "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["cursors"]) != len(self.task_sizes):
            raise ValueError(
                f"checkpoint has {len(state['cursors'])} tasks, this run has {len(self.task_sizes)}: "
                "resume with the same data and mixture"
            )
        self.step = int(state["step"])
        self.cursors = [int(c) for c in state["cursors"]]
        self.epochs = [int(e) for e in state["epochs"]]

"""Mixed batches for tDRO: every optimizer step draws examples from all K tasks at rate 1/K.

Mixed batches are right here (unlike fine-tuning's one-task batches) because the loss uses only
each query's own hard negatives, never other queries' passages. With `initial_weights` the rates
are those weights instead, as in the public tDRO code, whose stage 1 samples tasks with the
probabilities of the same file it starts the weights from (`construct_domain_dataset` feeds them to
`datasets.interleave_datasets`, an independent draw per example). Here the counts are the expected
ones, B·p_k rounded by largest remainder (`task_counts`): the same rates, less noise, and exactly
today's ⌊B/K⌋ draw for uniform rates. The draw of step t is a pure
function of (seed, t), identical on every rank; each rank then takes its contiguous slice and
splits it into micro-batches. So a resumed run draws exactly what an uninterrupted one would,
and a 2-process run sees the same examples as a 1-process run on the concatenated batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch

from tdro_suite.common.errors import DataError
from tdro_suite.data.arrow import ArrowExamples
from tdro_suite.data.mixture import largest_remainder
from tdro_suite.data.tasks import task_examples
from tdro_suite.data.types import TaskInfo, TrainExample
from tdro_suite.modeling.prompts import TaskPrompts, prompt_rng


@dataclass(frozen=True)
class TaskData:
    """One task (a tDRO group), with the prompts its texts get."""

    info: TaskInfo
    examples: Sequence[TrainExample]
    prompts: TaskPrompts


@dataclass(frozen=True)
class Item:
    """One drawn example: its task, the query, and [positive, hard negatives...] (already prompted)."""

    task_id: int
    query: str
    passages: tuple[str, ...]


def load_task_data(
    tasks: Sequence[TaskInfo],
    *,
    use_instructions: bool = True,
    sample_instructions: bool = False,
    limit: int | None = None,
    seed: int = 0,
) -> list[TaskData]:
    """Open every task (Arrow-backed, `limit` = a sample seeded with `seed`); an empty task or an example
    without hard negatives is a `DataError`."""
    out = []
    for task in tasks:
        examples = task_examples(task, limit=limit, seed=seed)
        if not examples:
            raise DataError(f"{task.path}: task '{task.name}' has no examples.")
        if isinstance(examples, ArrowExamples):
            without = int((examples.negative_counts() == 0).sum())
        else:
            without = sum(1 for e in examples if not e.negatives)
        if without:
            raise DataError(
                f"{task.path}: task '{task.name}': {without} of {len(examples)} examples have no hard negatives; "
                "tDRO's loss uses only hard negatives, so every example needs at least one "
                "(mine them first, e.g. with BM25)."
            )
        prompts = TaskPrompts.of(task.instruction, task.instructions, task.symmetric,
                                 use_instructions=use_instructions, sample=sample_instructions)
        out.append(TaskData(task, examples, prompts))
    return out


def task_counts(
    batch_size: int, num_tasks: int, generator: torch.Generator, rates: Sequence[float] | None = None
) -> list[int]:
    """Examples per task in one batch: ⌊B·p_k⌋ each, the leftovers one each to the largest remainders.

    p is `rates` normalised (uniform when None). Ties are broken by a random permutation drawn from
    `generator`, so uniform rates give ⌊B/K⌋ each and the B mod K leftovers to distinct random tasks.
    Exact fractions keep equal rates equal (no rounding noise decides a tie).
    """
    if rates is None:
        rates = [1.0] * num_tasks
    if len(rates) != num_tasks or any(not math.isfinite(r) or r < 0 for r in rates) or not sum(rates) > 0:
        raise ValueError(f"sampling rates must be {num_tasks} finite non-negative numbers with a positive sum")
    order = torch.randperm(num_tasks, generator=generator).tolist()
    exact = [Fraction(r) for r in rates]
    total = sum(exact)
    return largest_remainder(batch_size, [batch_size * r / total for r in exact], order)


RANDPERM_MAX_ROWS = 65_536  # up to this many rows a task draws from a full permutation (as every run so far)


def _pick(n: int, size: int, generator: torch.Generator) -> list[int]:
    """n indices into range(size): without replacement when possible, else with.

    A task of at most RANDPERM_MAX_ROWS rows takes the first n of a full permutation. A larger one draws
    indices one by one and redraws repeats (a uniform n-subset in random order, like the permutation's
    head) in O(n) instead of O(size): a full permutation of the paper's 3M-row tasks every step made the
    draw the slowest part of a tDRO step.
    """
    if n > size:
        return torch.randint(size, (n,), generator=generator).tolist()
    if size <= RANDPERM_MAX_ROWS:
        return torch.randperm(size, generator=generator)[:n].tolist()
    chosen: dict[int, None] = {}
    while len(chosen) < n:
        for i in torch.randint(size, (n - len(chosen),), generator=generator).tolist():
            if len(chosen) < n:
                chosen.setdefault(i, None)
    return list(chosen)


def draw_global_batch(
    tasks: Sequence[TaskData],
    step: int,
    *,
    batch_size: int,
    hard_negatives: int,
    seed: int,
    rates: Sequence[float] | None = None,
) -> list[Item]:
    """The whole (all ranks, all micro-batches) batch of optimizer step `step`, shuffled across tasks.

    `rates`: the tasks' sampling rates (`task_counts`); None is uniform.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    prompts = prompt_rng(seed, step)
    items: list[Item] = []
    for task_id, count in enumerate(task_counts(batch_size, len(tasks), generator, rates)):
        task = tasks[task_id]
        for index in _pick(count, len(task.examples), generator):
            example = task.examples[index]
            positive = example.positives[int(torch.randint(len(example.positives), (1,), generator=generator))]
            negatives = [example.negatives[j] for j in _pick(hard_negatives, len(example.negatives), generator)]
            q_prefix, p_prefix = task.prompts.draw(prompts)
            items.append(
                Item(task_id, q_prefix + example.query, tuple(p_prefix + p.full_text() for p in (positive, *negatives)))
            )
    order = torch.randperm(len(items), generator=generator).tolist()
    return [items[i] for i in order]


def local_micro_batches(items: Sequence[Item], *, rank: int, world_size: int, accumulation: int) -> list[list[Item]]:
    """This rank's contiguous slice of the global batch, split into `accumulation` micro-batches."""
    if len(items) % (world_size * accumulation):
        raise ValueError(f"batch of {len(items)} does not split into {world_size} ranks × {accumulation} micro-batches")
    per_rank = len(items) // world_size
    mine = list(items[rank * per_rank : (rank + 1) * per_rank])
    per_micro = per_rank // accumulation
    return [mine[m * per_micro : (m + 1) * per_micro] for m in range(accumulation)]

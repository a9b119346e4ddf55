"""Mixed tDRO batches: every task at rate 1/K (or at its initial weight), a pure function of (seed, step), split
across ranks without overlap."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))

from dro_synthetic import build_planted_tasks

from tdro_suite.data.tasks import load_tasks
from tdro_suite.dro.batches import draw_global_batch, load_task_data, local_micro_batches, task_counts


@pytest.fixture(scope="module")
def tasks(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    manifest = build_planted_tasks(tmp_path_factory.mktemp("dro-batches") / "data", tiny_encoder_dir)
    return load_task_data(load_tasks([manifest]), use_instructions=False)


def test_task_counts_are_balanced() -> None:
    for batch, k in ((13, 13), (26, 13), (10, 4), (3, 4)):
        counts = task_counts(batch, k, torch.Generator().manual_seed(0))
        assert sum(counts) == batch and max(counts) - min(counts) <= 1


def _counts_before_rates(batch_size: int, num_tasks: int, generator: torch.Generator) -> list[int]:
    """The uniform rule as it was before sampling rates existed: ⌊B/K⌋ each, B mod K to random tasks."""
    base, extra = divmod(batch_size, num_tasks)
    counts = [base] * num_tasks
    for k in torch.randperm(num_tasks, generator=generator)[:extra].tolist():
        counts[k] += 1
    return counts


def test_uniform_rates_draw_exactly_what_they_drew_before() -> None:
    """No initial weights (or equal ones) → the same counts and the same generator state: bundled runs do not move."""
    for batch, k in ((13, 13), (26, 13), (10, 4), (3, 4), (2048, 25), (7, 3)):
        for seed in range(5):
            old, new, equal = (torch.Generator().manual_seed(seed) for _ in range(3))
            expected = _counts_before_rates(batch, k, old)
            assert task_counts(batch, k, new) == expected
            assert task_counts(batch, k, equal, [1 / k] * k) == expected  # a uniform weights file
            assert torch.equal(new.get_state(), old.get_state()) and torch.equal(equal.get_state(), old.get_state())


def test_task_counts_follow_the_rates() -> None:
    # B·p = [5, 3, 2]: exact, nothing left over, whatever the permutation
    assert task_counts(10, 3, torch.Generator().manual_seed(0), [0.5, 0.3, 0.2]) == [5, 3, 2]
    # B·p = [3.5, 1.75, 1.75] → floors [3, 1, 1], 2 leftovers to the largest remainders 0.75, 0.75
    assert task_counts(7, 3, torch.Generator().manual_seed(0), [2, 1, 1]) == [3, 2, 2]
    # B·p = [1.2, 0.6, 0.6, 0.6] → floors [1, 0, 0, 0]; the 2 leftovers to 2 of the 3 tied tasks, at random
    seen = set()
    for seed in range(20):
        counts = task_counts(3, 4, torch.Generator().manual_seed(seed), [0.4, 0.2, 0.2, 0.2])
        assert sum(counts) == 3 and counts[0] == 1 and sorted(counts[1:]) == [0, 1, 1]
        seen.add(tuple(counts))
    assert len(seen) == 3  # every tied task can win
    # a zero rate is never drawn; the counts stay within one of B·p
    for seed in range(10):
        rates = [0.0, *torch.rand(6, generator=torch.Generator().manual_seed(seed)).tolist()]
        counts = task_counts(100, 7, torch.Generator().manual_seed(seed), rates)
        assert sum(counts) == 100 and counts[0] == 0
        assert all(abs(c - 100 * r / sum(rates)) < 1 for c, r in zip(counts, rates, strict=True))
    with pytest.raises(ValueError, match="sampling rates"):
        task_counts(4, 2, torch.Generator(), [1.0])
    with pytest.raises(ValueError, match="sampling rates"):
        task_counts(4, 2, torch.Generator(), [0.0, 0.0])


def test_global_batch_samples_tasks_at_the_initial_weights(tasks) -> None:
    rates = [0.5, 0.25, 0.125, 0.125]
    items = draw_global_batch(tasks, 5, batch_size=16, hard_negatives=3, seed=1, rates=rates)
    assert Counter(it.task_id for it in items) == {0: 8, 1: 4, 2: 2, 3: 2}
    assert items == draw_global_batch(tasks, 5, batch_size=16, hard_negatives=3, seed=1, rates=rates)
    uniform = draw_global_batch(tasks, 5, batch_size=16, hard_negatives=3, seed=1)
    assert uniform == draw_global_batch(tasks, 5, batch_size=16, hard_negatives=3, seed=1, rates=[3.0] * 4)


def test_global_batch_mixes_tasks_and_is_reproducible(tasks) -> None:
    items = draw_global_batch(tasks, 5, batch_size=16, hard_negatives=3, seed=1)
    assert Counter(it.task_id for it in items) == {0: 4, 1: 4, 2: 4, 3: 4}
    assert all(len(it.passages) == 4 for it in items)
    assert items == draw_global_batch(tasks, 5, batch_size=16, hard_negatives=3, seed=1)
    assert items != draw_global_batch(tasks, 6, batch_size=16, hard_negatives=3, seed=1)
    easy = [it for it in items if it.task_id == 3]
    assert all(it.passages[0] == it.query for it in easy)  # the positive comes first
    assert len({it.task_id for it in items[:8]}) > 1  # shuffled: a rank's slice is not one task


def test_rank_slices_partition_the_global_batch(tasks) -> None:
    items = draw_global_batch(tasks, 0, batch_size=16, hard_negatives=3, seed=1)
    parts = [mb for r in range(2) for mb in local_micro_batches(items, rank=r, world_size=2, accumulation=2)]
    assert [len(mb) for mb in parts] == [4, 4, 4, 4]
    assert [it for mb in parts for it in mb] == items
    with pytest.raises(ValueError, match="does not split"):
        local_micro_batches(items, rank=0, world_size=3, accumulation=1)


def test_pick_large_tasks_without_a_full_permutation() -> None:
    """Up to RANDPERM_MAX_ROWS rows: the head of a full permutation (the batches of every earlier run); above
    it: distinct indices drawn one by one, reproducible from the generator and uniform over the rows."""
    from tdro_suite.dro.batches import RANDPERM_MAX_ROWS, _pick

    small = RANDPERM_MAX_ROWS
    assert _pick(7, small, torch.Generator().manual_seed(3)) == torch.randperm(
        small, generator=torch.Generator().manual_seed(3))[:7].tolist()
    big = 10 * RANDPERM_MAX_ROWS
    generator = torch.Generator().manual_seed(5)
    draws = [_pick(64, big, generator) for _ in range(500)]
    assert all(len(set(d)) == 64 and all(0 <= i < big for i in d) for d in draws)
    assert draws[0] == _pick(64, big, torch.Generator().manual_seed(5))
    counts = np.bincount([i * 8 // big for d in draws for i in d], minlength=8)  # 32,000 draws in 8 bins
    assert counts.min() > 0.9 * counts.mean() and counts.max() < 1.1 * counts.mean()
    tight = _pick(RANDPERM_MAX_ROWS + 1, RANDPERM_MAX_ROWS + 1, torch.Generator().manual_seed(1))  # every row
    assert sorted(tight) == list(range(RANDPERM_MAX_ROWS + 1))

"""Mixed tDRO batches: every task at rate 1/K, a pure function of (seed, step), split across ranks without overlap."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

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

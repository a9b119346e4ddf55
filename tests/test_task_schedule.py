"""finetune's task schedules (issue 18): `random` draws exactly what it drew before the option existed;
`stratified` follows the mixture over every window of steps, is a function of the seed alone (so ranks
agree and a resume continues it), and appears as a config field and CLI option."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))
from train_data import write_tasks

from tdro_suite.runtime.config import result_settings
from tdro_suite.runtime.metrics import read_metrics
from tdro_suite.runtime.run_dir import CheckpointError
from tdro_suite.train.config import FinetuneConfig
from tdro_suite.train.finetune import run_finetune
from tdro_suite.train.sampler import HomogeneousBatchSampler, StratifiedSchedule

QUIET = Console(quiet=True)

# tDRO weights of the bundled 13 tasks (relative measure, seed 42, 20 steps): a realistic reweighting.
TDRO_WEIGHTS = [0.0565, 0.0583, 0.0597, 0.0601, 0.0698, 0.0698, 0.0735, 0.0753, 0.0759, 0.0804, 0.0813, 0.1110,
                0.1284]


def _sampler(weights: list[float], seed: int = 42, schedule: str = "stratified") -> HomogeneousBatchSampler:
    return HomogeneousBatchSampler([7] * len(weights), weights, global_batch_size=4, seed=seed, schedule=schedule)


def _tasks(sampler: HomogeneousBatchSampler, steps: int) -> list[int]:
    return [sampler.next_batch().task for _ in range(steps)]


def test_random_schedule_draws_what_it_drew_before() -> None:
    """The default keeps the old draw: rng(seed, 0, step).choice(K, p), pinned for the bundled 13 tasks."""
    uniform = HomogeneousBatchSampler([5] * 13, [1.0] * 13, 4, seed=42)
    assert [uniform.task_of_step(s) for s in range(20)] == [
        10, 11, 12, 7, 5, 11, 0, 7, 5, 3, 0, 1, 1, 10, 6, 12, 8, 12, 3, 5
    ]
    weights = np.asarray(TDRO_WEIGHTS) / sum(TDRO_WEIGHTS)
    reweighted = _sampler(TDRO_WEIGHTS, seed=7, schedule="random")
    old = [int(np.random.default_rng([7, 0, s]).choice(13, p=weights)) for s in range(200)]
    assert [reweighted.task_of_step(s) for s in range(200)] == old
    first = HomogeneousBatchSampler([5, 7, 9], [0.6, 0.3, 0.1], 2, seed=7)
    batches = [first.next_batch() for _ in range(3)]
    assert [(b.task, b.indices) for b in batches] == [(1, (4, 6)), (1, (1, 0)), (0, (3, 0))]


def test_uniform_and_top_p_windows_hold_every_task_once() -> None:
    """W = K for a uniform mixture: every window of K steps is a permutation of the K tasks."""
    for k in (13, 9, 1):
        sampler = _sampler([1.0] * k)
        assert sampler.stratified is not None and sampler.stratified.window == k
        tasks = _tasks(sampler, 5 * k)
        assert all(sorted(tasks[j * k : (j + 1) * k]) == list(range(k)) for j in range(5))


def test_window_counts_are_the_largest_remainder_apportionment_of_what_is_due() -> None:
    """Per window: ⌊q⌋ or ⌈q⌉ of quota q = W·p + owed; at every window's end each count within 1 of n·p."""
    schedule = StratifiedSchedule(TDRO_WEIGHTS, seed=3)
    p = [Fraction(w) / sum(Fraction(x) for x in TDRO_WEIGHTS) for w in TDRO_WEIGHTS]
    window = schedule.window
    assert window == math.ceil(1 / min(p)) == 18
    done = [0] * 13
    for j in range(300):
        counts = schedule.window_counts(j)
        assert sum(counts) == window
        quotas = [(j + 1) * window * pk - d for pk, d in zip(p, done, strict=True)]
        assert all(math.floor(q) <= c <= math.ceil(q) for q, c in zip(quotas, counts, strict=True))
        done = [d + c for d, c in zip(done, counts, strict=True)]
        assert all(abs(d - (j + 1) * window * pk) < 1 for d, pk in zip(done, p, strict=True))
    steps = [schedule.task_of_step(s) for s in range(300 * window)]
    assert Counter(steps) == Counter(dict(enumerate(done)))


def test_zero_weights_are_never_scheduled_and_a_small_weight_widens_the_window() -> None:
    schedule = StratifiedSchedule([0.0, 0.5, 0.49, 0.01], seed=0)
    assert schedule.window == 100
    tasks = [schedule.task_of_step(s) for s in range(300)]
    assert 0 not in tasks and Counter(tasks) == {1: 150, 2: 147, 3: 3}


def test_stratified_is_seeded() -> None:
    a, b, c = _tasks(_sampler(TDRO_WEIGHTS, 5), 90), _tasks(_sampler(TDRO_WEIGHTS, 5), 90), _tasks(
        _sampler(TDRO_WEIGHTS, 6), 90
    )
    assert a == b and a != c
    uniform = [_tasks(_sampler([1.0] * 13, seed), 39) for seed in (1, 2)]
    assert uniform[0] != uniform[1] and Counter(uniform[0]) == Counter(uniform[1])  # same counts, other order


def test_ranks_agree_without_communicating() -> None:
    """Rank 0 and rank 1 build their own sampler from the same seed: the same tasks and examples every step,
    whichever step each asks about first (rank 1 here starts with a late step)."""
    rank0, rank1 = _sampler(TDRO_WEIGHTS), _sampler(TDRO_WEIGHTS)
    late = rank1.task_of_step(77)
    batches0, batches1 = [rank0.next_batch() for _ in range(100)], [rank1.next_batch() for _ in range(100)]
    assert batches0 == batches1 and batches0[77].task == late
    parts = [batches0[5].indices[batches0[5].local_slice(rank, 2, 0, 1)] for rank in (0, 1)]
    assert parts[0] + parts[1] == batches0[5].indices


@pytest.mark.parametrize("weights", [[1.0] * 13, TDRO_WEIGHTS])
def test_resume_mid_window_continues_the_schedule(weights: list[float]) -> None:
    whole = _sampler(weights)
    expected = [whole.next_batch() for _ in range(60)]
    first = _sampler(weights)
    done = [first.next_batch() for _ in range(20)]  # window 13 or 18: stopped inside the second window
    resumed = _sampler(weights)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert done + [resumed.next_batch() for _ in range(40)] == expected


def test_unknown_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="task schedule"):
        _sampler([1.0, 1.0], schedule="sorted")


def test_config_field_fingerprint_and_cli_option() -> None:
    """Default random (left out of the fingerprint, so runs made before the option resume); stratified is
    fingerprinted; `finetune --help` lists it with its choices."""
    assert FinetuneConfig().task_schedule == "random"
    assert "task_schedule" not in result_settings(FinetuneConfig())
    assert result_settings(FinetuneConfig(task_schedule="stratified"))["task_schedule"] == "stratified"
    with pytest.raises(ValueError):
        FinetuneConfig(task_schedule="sorted")
    from tdro_suite.cli import app

    out = CliRunner().invoke(app, ["finetune", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    assert "--task-schedule" in out and "stratified" in out


def test_finetune_runs_the_stratified_schedule_through_a_resume(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    """A real (tiny) fine-tune stopped inside a window and resumed: every window of 3 steps holds the 3
    tasks once; resuming it as `random` is refused, naming the setting."""
    data = write_tasks(tmp_path / "data", per_task=6)
    values = dict(
        model=str(tiny_encoder_dir), data=[str(data)], output_dir=str(tmp_path / "run"), max_steps=6,
        per_device_batch_size=2, hard_negatives=1, query_max_length=16, passage_max_length=16,
        temperature=0.05, progress=False, task_schedule="stratified",
    )
    run_finetune(FinetuneConfig(**values, stop_after_steps=4), console=QUIET)
    with pytest.raises(CheckpointError, match="'task_schedule' was 'stratified', now None"):
        run_finetune(FinetuneConfig(**{**values, "task_schedule": "random"}, resume=True), console=QUIET)
    run_finetune(FinetuneConfig(**values, resume=True), console=QUIET)
    tasks = [r["task"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert sorted(tasks[:3]) == sorted(tasks[3:]) == ["task0", "task1", "task2"]

"""Trainer building blocks: schedule, homogeneous sampler, text groups, metrics log, effective mixture."""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))
from train_data import write_tasks

from tdro_suite.common.errors import ConfigError, DataError
from tdro_suite.config import load_config
from tdro_suite.data.mixture import Mixture, write_mixture
from tdro_suite.data.tasks import load_task_examples, load_tasks
from tdro_suite.runtime.metrics import MetricsLogger, plot_loss_curve, read_metrics
from tdro_suite.runtime.optim import build_optimizer, build_scheduler, warmup_cosine_factor
from tdro_suite.train.batching import global_text_groups
from tdro_suite.train.config import FinetuneConfig
from tdro_suite.train.finetune import effective_mixture
from tdro_suite.train.sampler import HomogeneousBatchSampler


def test_warmup_then_cosine_to_min_ratio() -> None:
    f = [warmup_cosine_factor(s, warmup_steps=2, max_steps=10, min_lr_ratio=0.1) for s in range(11)]
    assert f[0] == pytest.approx(0.5) and f[1] == pytest.approx(1.0)  # linear warmup
    assert f[2] == pytest.approx(1.0)
    assert f[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f[10] == pytest.approx(0.1)  # ends at the minimum ratio
    assert all(a >= b for a, b in itertools.pairwise(f[2:]))
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, 1e-3, weight_decay=0.01)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]  # no decay on the bias
    sched = build_scheduler(opt, 2, 10, 0.1)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-3 * x for x in f[:10]])


def test_sampler_is_a_function_of_seed_and_step_and_reshuffles_exhausted_tasks() -> None:
    a = HomogeneousBatchSampler([5, 7], [0.5, 0.5], global_batch_size=4, seed=3)
    b = HomogeneousBatchSampler([5, 7], [0.5, 0.5], global_batch_size=4, seed=3)
    batches = [a.next_batch() for _ in range(30)]
    assert [x.task for x in batches] == [b.next_batch().task for _ in range(30)]
    assert all(len(x.indices) == 4 for x in batches)
    # within one task, consecutive epochs each visit every example exactly once
    task0 = [i for x in batches if x.task == 0 for i in x.indices]
    assert len(task0) >= 10
    for epoch in range(len(task0) // 5):
        assert sorted(task0[epoch * 5 : (epoch + 1) * 5]) == list(range(5))
    # resuming from a state dict continues identically
    c = HomogeneousBatchSampler([5, 7], [0.5, 0.5], global_batch_size=4, seed=3)
    for _ in range(13):
        c.next_batch()
    d = HomogeneousBatchSampler([5, 7], [0.5, 0.5], global_batch_size=4, seed=3)
    d.load_state_dict(json.loads(json.dumps(c.state_dict())))
    assert [c.next_batch() for _ in range(10)] == [d.next_batch() for _ in range(10)]


def test_sampler_follows_the_mixture_weights() -> None:
    sampler = HomogeneousBatchSampler([10, 10, 10], [0.6, 0.3, 0.1], global_batch_size=2, seed=0)
    counts = Counter(sampler.task_of_step(s) for s in range(3000))
    assert [counts[k] / 3000 for k in range(3)] == pytest.approx([0.6, 0.3, 0.1], abs=0.03)
    with pytest.raises(ValueError, match="at least one example"):
        HomogeneousBatchSampler([0, 3], [0.5, 0.5], 2, 0)


def test_local_slices_partition_the_global_batch() -> None:
    batch = HomogeneousBatchSampler([50], [1.0], global_batch_size=12, seed=0).next_batch()
    seen = []
    for micro in range(3):
        for rank in range(2):
            seen.extend(batch.indices[batch.local_slice(rank, 2, micro, 3)])
    assert seen == list(batch.indices)
    # micro-step m over all ranks == micro-step m of one process with a 2× batch
    one = [batch.indices[batch.local_slice(0, 1, m, 3)] for m in range(3)]
    two = [batch.indices[batch.local_slice(0, 2, m, 3)] + batch.indices[batch.local_slice(1, 2, m, 3)]
           for m in range(3)]
    assert one == two


def test_text_groups_apply_prompts_and_sample_hard_negatives(tmp_path: Path) -> None:
    tasks = load_tasks([write_tasks(tmp_path, per_task=6, negatives=2)])
    examples = load_task_examples(tasks[2])  # task2 is symmetric
    batch = HomogeneousBatchSampler([6], [1.0], 4, seed=1).next_batch()
    groups = global_text_groups(batch, examples, tasks[2], hard_negatives=3, seed=1)
    assert len(groups) == 4 and all(len(g.passages) == 4 for g in groups)
    prefix = "Instruct: Find passages for task2\nQuery: "
    for g, index in zip(groups, batch.indices, strict=True):
        ex = examples[index]
        assert g.query == prefix + ex.query
        assert g.passages[0] == prefix + ex.positives[0].text  # symmetric: prompt on passages too
        assert {p.removeprefix(prefix) for p in g.passages[1:]} <= {n.text for n in ex.negatives}
    again = global_text_groups(batch, examples, tasks[2], hard_negatives=3, seed=1)
    assert again == groups


def test_effective_mixture_reads_weights_and_keeps_top_percent(tmp_path: Path) -> None:
    tasks = load_tasks([write_tasks(tmp_path / "d", n_tasks=3)])
    weights = tmp_path / "w.json"
    write_mixture(weights, Mixture(("task0", "task1", "task2"), (0.2, 0.7, 0.1), (0, 0, 0)))
    assert effective_mixture(tasks, None, None).weights == pytest.approx((1 / 3,) * 3)
    assert effective_mixture(tasks, str(weights), None).as_dict() == pytest.approx(
        {"task0": 0.2, "task1": 0.7, "task2": 0.1}
    )
    top = effective_mixture(tasks, str(weights), 70)  # floor(3 * 0.7) = 2 tasks, uniform
    assert top.as_dict() == pytest.approx({"task0": 0.5, "task1": 0.5})
    write_mixture(weights, Mixture(("task0", "nope"), (0.5, 0.5), (0, 0)))
    with pytest.raises(DataError, match="nope"):
        effective_mixture(tasks, str(weights), None)


def test_metrics_logger_drops_lines_after_the_resumed_step_and_plots(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    log = MetricsLogger(path)
    for step in range(1, 6):
        log.log({"step": step, "loss": 1.0 / step, "lr": 0.1})
    log.close()
    log = MetricsLogger(path, resume_step=3)
    log.log({"step": 4, "loss": 9.0, "lr": 0.1})
    log.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 1.0), (2, 0.5), (3, 1 / 3), (4, 9.0)]
    png = plot_loss_curve(path, tmp_path / "loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_steps: 10\nstop_after_steps: 20\n")
    with pytest.raises(ConfigError, match="stop_after_steps"):
        load_config(FinetuneConfig, cfg)
    cfg.write_text("batch: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'batch'"):
        load_config(FinetuneConfig, cfg)
    assert np.isclose(load_config(FinetuneConfig, None, {"top_percent": 70}).top_percent, 70)

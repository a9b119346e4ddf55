"""Exact resume: N steps straight vs N/2 + stop + resume + N/2 give identical losses and weights.

The tiny BERT keeps dropout on, so this also checks that RNG states travel with the checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))
from train_data import write_tasks

from tdro_suite.common.errors import ConfigError
from tdro_suite.runtime.metrics import read_metrics
from tdro_suite.runtime.run_dir import CheckpointError
from tdro_suite.train.config import FinetuneConfig
from tdro_suite.train.finetune import run_finetune

STEPS = 4


def _config(tiny_encoder_dir: Path, data: Path, out: Path, **kw) -> FinetuneConfig:
    return FinetuneConfig(
        model=str(tiny_encoder_dir), data=[str(data)], output_dir=str(out), max_steps=STEPS,
        per_device_batch_size=4, grad_accumulation=2, hard_negatives=1, query_max_length=16,
        passage_max_length=16, learning_rate=1e-3, warmup_steps=1, temperature=0.05, progress=False, **kw,
    )


def test_resume_continues_exactly(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    data = write_tasks(tmp_path / "data", per_task=10)
    straight = run_finetune(_config(tiny_encoder_dir, data, tmp_path / "straight")).model_dir

    split_dir = tmp_path / "split"
    stopped = run_finetune(_config(tiny_encoder_dir, data, split_dir, stop_after_steps=STEPS // 2)).checkpoint
    assert stopped.name == f"step-{STEPS // 2:06d}" and not (split_dir / "model").exists()
    assert not list(stopped.parent.glob(".*tmp"))  # the temporary folder was renamed, nothing left behind
    with pytest.raises(ConfigError, match="--resume"):  # a fresh start would silently clobber the run
        run_finetune(_config(tiny_encoder_dir, data, split_dir))
    resumed = run_finetune(_config(tiny_encoder_dir, data, split_dir, resume=True)).model_dir

    a = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    b = read_metrics(split_dir / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))
    assert [r["task"] for r in a] == [r["task"] for r in b]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # bit-identical, step for step
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    wa, wb = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert (tmp_path / "straight" / "loss.png").is_file()
    assert (straight / "tdro_instructions.json").is_file()  # trained with instructions: eval/serve prompt it so


def test_resume_refuses_a_different_run(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    data = write_tasks(tmp_path / "data", per_task=6)
    run_finetune(_config(tiny_encoder_dir, data, tmp_path / "run", stop_after_steps=1))
    assert len(list((tmp_path / "run" / "checkpoints").glob("step-*"))) == 1
    with pytest.raises(CheckpointError, match="'seed' was 42, now 7"):
        run_finetune(_config(tiny_encoder_dir, data, tmp_path / "run", resume=True, seed=7))

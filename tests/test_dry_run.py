"""`finetune --dry-run` and `optimize --dry-run`: the plan, its problems (exit 1) and its warnings (exit 0).

The resume checks run a real 1-step run first, so the dry run's fingerprint is checked against the one
the run itself writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))

from dro_synthetic import build_planted_tasks
from train_data import write_tasks

from tdro_suite.cli import app
from tdro_suite.dro.config import OptimizeConfig
from tdro_suite.dro.optimize import plan_optimize, run_optimize
from tdro_suite.runtime.plan import Layout, launch_layout
from tdro_suite.train.config import FinetuneConfig
from tdro_suite.train.finetune import plan_finetune, run_finetune

ROOT = Path(__file__).resolve().parents[1]
ONE = Layout(processes=1, rank=0, cuda=False)
QUIET = Console(quiet=True)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dry_run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--dry-run"], env={"COLUMNS": "200", **(env or {})})
    return result.exit_code, result.output


def test_finetune_plan_of_the_bundled_mixture_loads_no_weights(tmp_path: Path) -> None:
    code, out = dry_run("finetune", "--top-percent", "70", "--output-dir", str(tmp_path / "run"))
    assert code == 0, out
    assert "13 tasks, 9684 examples" in out  # counted from the files' lines (data stats agrees)
    assert "top 70% of the tasks by weight" in out and "9 of 13" in out
    assert "32 queries = 32/device × 1 process × 1 accumulation" in out
    assert "one process (WORLD_SIZE is unset: no launcher)" in out and "fp32" in out
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_missing_data_and_mixture_are_problems(tmp_path: Path) -> None:
    code, out = dry_run("finetune", "--data", str(tmp_path / "nowhere"))
    assert code == 1 and "problem: data:" in out and "nowhere: no such file or folder" in out
    code, out = dry_run("finetune", "--mixture", str(tmp_path / "weights.json"))
    assert code == 1 and "problem: mixture:" in out and "weights.json: mixture file not found" in out


def test_gradcache_under_deepspeed_is_refused_as_the_run_would(tmp_path: Path) -> None:
    env = {"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "8", "RANK": "0", "ACCELERATE_USE_DEEPSPEED": "true",
           "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ROOT / "configs" / "deepspeed" / "zero3.json")}
    code, out = dry_run("finetune", "--gradcache", "--output-dir", str(tmp_path / "run"), env=env)
    assert code == 1 and "DeepSpeed ZeRO-3, 8 processes" in out and "gradcache is not supported" in out
    assert "256 queries = 32/device × 8 processes" in out
    code, out = dry_run("finetune", "--output-dir", str(tmp_path / "run"), env=env)
    assert code == 0, out


def test_launch_layout_reads_the_launchers_variables() -> None:
    two_nodes = launch_layout({"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8", "RANK": "3"}, cuda=True)
    assert (two_nodes.processes, two_nodes.rank) == (16, 3)
    assert two_nodes.describe() == "DDP over NCCL, 16 processes = 2 machines × 8"
    zero = launch_layout({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, cuda=True)
    assert zero.deepspeed and zero.describe() == "DeepSpeed ZeRO-2, 1 process"
    assert launch_layout({}, cuda=False).describe() == "one process (WORLD_SIZE is unset: no launcher)"


def test_hub_model_offline_and_bf16_without_cuda_are_warnings_only(tmp_path: Path) -> None:
    code, out = dry_run(
        "finetune", "--model", "someone/not-cached-anywhere", "--precision", "bf16",
        "--output-dir", str(tmp_path / "run"), env={"HF_HUB_OFFLINE": "1"},
    )
    assert code == 0, out
    assert "would be downloaded from https://huggingface.co/someone/not-cached-anywhere" in out
    assert "warning: model someone/not-cached-anywhere: not in the local Hugging Face cache" in out
    if not torch.cuda.is_available():
        assert "warning: precision 'bf16' needs a CUDA GPU" in out
    code, out = dry_run("finetune", "--model", str(tmp_path), "--output-dir", str(tmp_path / "run"))
    assert code == 1 and f"Model folder {tmp_path} has no config.json" in out


def test_optimize_of_the_paper_config_without_stage_0_exits_1_naming_what_is_missing(tmp_path: Path) -> None:
    """Through the real console script: one message per problem, no traceback, nothing loaded."""
    proc = subprocess.run(
        [sys.executable, "-m", "tdro_suite.cli", "optimize", "--config",
         str(ROOT / "configs" / "paper" / "optimize-qwen1.5-0.5b.yaml"), "--dry-run"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "problem: reference:" in proc.stdout and "stage 0" in proc.stdout
    assert "problem: data: data/retrieval: no such file or folder" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_optimize_without_a_reference_fails_validation() -> None:
    result = CliRunner().invoke(app, ["optimize", "--measure", "relative", "--dry-run"])
    assert result.exit_code != 0 and "needs a reference model" in str(result.exception)


def test_finetune_resume_plan_uses_the_runs_own_fingerprint(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    data = write_tasks(tmp_path / "data", per_task=6)
    settings = dict(
        model=str(tiny_encoder_dir), data=[str(data)], output_dir=str(tmp_path / "run"), max_steps=3,
        per_device_batch_size=4, query_max_length=16, passage_max_length=16, progress=False,
    )
    run_finetune(FinetuneConfig(**settings, stop_after_steps=1), console=QUIET)
    held = plan_finetune(FinetuneConfig(**settings), ONE)
    assert any("already holds a run" in p for p in held.problems)
    resumed = plan_finetune(FinetuneConfig(**settings, resume=True), ONE)
    assert resumed.ok, resumed.problems
    assert ("run folder", f"{tmp_path / 'run'} (resumed from step-000001)") in resumed.rows
    changed = plan_finetune(FinetuneConfig(**settings, resume=True, learning_rate=5e-4), ONE)
    assert len(changed.problems) == 1 and "'learning_rate' was 0.0001, now 0.0005" in changed.problems[0]


def test_optimize_resume_plan_uses_the_runs_own_fingerprint(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    manifest = build_planted_tasks(tmp_path / "data", tiny_encoder_dir)
    settings = dict(
        model=str(tiny_encoder_dir), data=[str(manifest)], reference=str(tiny_encoder_dir), use_instructions=False,
        global_batch_size=8, hard_negatives=3, max_steps=3, output_dir=str(tmp_path / "run"), progress=False,
    )
    run_optimize(OptimizeConfig(**settings, stop_after_steps=1), console=QUIET)
    resumed = plan_optimize(OptimizeConfig(**settings, resume=True), ONE)
    assert resumed.ok, resumed.problems
    rows = dict(resumed.rows)
    assert rows["reference"] == f"{tiny_encoder_dir}: local folder {tiny_encoder_dir}"
    assert rows["global batch"].startswith("8 queries per step mixing 4 tasks uniformly; 8 per micro-batch")
    changed = plan_optimize(OptimizeConfig(**settings, resume=True, step_size=0.5), ONE)
    assert len(changed.problems) == 1 and "'step_size' was 0.02, now 0.5" in changed.problems[0]
    indivisible = plan_optimize(OptimizeConfig(**settings, resume=True), Layout(processes=3, rank=0, cuda=False))
    assert any("must be divisible by processes × grad_accumulation = 3 × 1" in p for p in indivisible.problems)

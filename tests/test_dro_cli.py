"""`tdro-suite optimize` as a user runs it: YAML + overrides, --train-reference through finetune, clean errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))

from dro_synthetic import build_planted_tasks

from tdro_suite.data.mixture import read_mixture
from tdro_suite.train.finetune import effective_mixture


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "tdro_suite.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture(scope="module")
def planted(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_planted_tasks(tmp_path_factory.mktemp("dro-cli") / "data", tiny_encoder_dir)


def test_optimize_with_train_reference_then_finetune_reads_the_weights(
    planted: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    reference_cfg = tmp_path / "reference.yaml"
    reference_cfg.write_text(yaml.safe_dump({
        "per_device_batch_size": 8, "hard_negatives": 3, "temperature": 0.05, "query_max_length": 16,
        "passage_max_length": 16, "learning_rate": 5e-3, "max_steps": 6, "progress": False,
    }))
    config = tmp_path / "optimize.yaml"
    config.write_text(yaml.safe_dump({
        "model": str(tiny_encoder_dir), "train_reference": True, "reference_config": str(reference_cfg),
        "use_instructions": False, "max_steps": 2, "global_batch_size": 8, "hard_negatives": 3,
        "temperature": 0.05, "step_size": 0.5, "learning_rate": 1e-3, "output_dir": str(tmp_path / "unused"),
    }))
    run = tmp_path / "run"
    proc = run_cli("optimize", str(planted), "--config", str(config), "--output-dir", str(run), "--max-steps", "3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "tDRO task weights" in proc.stdout and all(n in proc.stdout for n in ("map-a", "map-b", "noisy", "easy"))
    assert (run / "reference" / "model" / "config.json").is_file()
    assert read_mixture(run / "reference" / "mixture.json").weights == (0.25,) * 4  # trained on the uniform mixture
    weights = read_mixture(run / "weights.json")
    assert weights.names == ("map-a", "map-b", "noisy", "easy") and len(weights.weights) == 4
    from tdro_suite.data.tasks import load_tasks

    chosen = effective_mixture(load_tasks([planted]), str(run / "weights.json"), 70)  # what finetune --top-percent does
    top2 = sorted(weights.names, key=lambda n: -weights.weight_of(n))[:2]
    assert sorted(chosen.names) == sorted(top2)

    refused = run_cli("optimize", str(planted), "--config", str(config), "--output-dir", str(run))
    assert refused.returncode != 0 and "already holds a run" in refused.stderr
    again = run_cli(
        "optimize", str(planted), "--config", str(config), "--output-dir", str(run), "--max-steps", "3", "--resume"
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Reusing the reference model" in again.stdout + again.stderr
    assert read_mixture(run / "weights.json") == weights


def test_missing_reference_is_a_clean_error(planted: Path, tmp_path: Path) -> None:
    proc = run_cli("optimize", str(planted), "--measure", "relative", "--output-dir", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "needs a reference model" in proc.stderr and "Traceback" not in proc.stderr

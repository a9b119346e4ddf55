"""tDRO under torchrun: 2 CPU processes (gloo) give the weights of 1 process on the concatenated batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))

from dro_synthetic import build_planted_tasks, without_dropout

from tdro_suite.dro.config import OptimizeConfig
from tdro_suite.dro.optimize import run_optimize
from tdro_suite.dro.outputs import read_trajectory

SCRIPTS = Path(__file__).resolve().parent / "dist_scripts"


def test_two_processes_match_one_process(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    model = without_dropout(tiny_encoder_dir, tmp_path / "encoder")
    manifest = build_planted_tasks(tmp_path / "data", model)
    values = dict(
        data=[str(manifest)], model=str(model), reference=str(tiny_encoder_dir), use_instructions=False,
        global_batch_size=16, hard_negatives=3, temperature=0.05, learning_rate=2e-3, step_size=0.5, max_steps=4,
        seed=3,
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single_cfg = OptimizeConfig(**values, output_dir=str(tmp_path / "one"))
        single = run_optimize(single_cfg, console=Console(quiet=True)).run_dir
    finally:
        torch.set_num_threads(before)
    config = tmp_path / "two.json"
    config.write_text(json.dumps({**values, "output_dir": str(tmp_path / "two"), "grad_accumulation": 2}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node=2", str(SCRIPTS / "dro_run.py"), str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"

    one = read_trajectory(single / "trajectory.csv")
    two = read_trajectory(tmp_path / "two" / "trajectory.csv")
    assert len(one) == len(two) == 4
    for a, b in zip(one, two, strict=True):
        for key, value in a.items():
            assert b[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (a["step"], key)
    names = json.loads((single / "weights.json").read_text())["domain_ids"]
    final = [one[-1][f"weight/{n}"] for n in names]
    assert max(final) - min(final) > 0.05  # the weights moved, so the comparison has teeth

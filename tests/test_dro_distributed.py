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


def _torchrun_optimize(config: dict, path: Path) -> None:
    path.write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc-per-node=2", str(SCRIPTS / "dro_run.py"), str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def test_two_process_resume_with_dropout_is_bit_exact(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    """Interrupted after 2 of 4 steps and resumed, 2 ranks with dropout on reproduce the uninterrupted run
    exactly: each rank gets its OWN RNG state back (restoring rank 0's on every rank would change rank 1's
    dropout masks), and the proxy's weights load strictly."""
    manifest = build_planted_tasks(tmp_path / "data", tiny_encoder_dir)
    values = dict(
        data=[str(manifest)], model=str(tiny_encoder_dir), reference=str(tiny_encoder_dir), use_instructions=False,
        global_batch_size=16, grad_accumulation=2, hard_negatives=3, temperature=0.05, learning_rate=2e-3,
        step_size=0.5, max_steps=4, save_steps=2, seed=3, progress=False,
    )
    _torchrun_optimize({**values, "output_dir": str(tmp_path / "straight")}, tmp_path / "straight.json")
    split = {**values, "output_dir": str(tmp_path / "split")}
    _torchrun_optimize({**split, "stop_after_steps": 2}, tmp_path / "stopped.json")
    checkpoint = tmp_path / "split" / "checkpoints" / "step-000002"
    states = [  # accelerate writes one RNG file per process
        torch.load(checkpoint / f"random_states_{r}.pkl", weights_only=False)["torch_manual_seed"] for r in (0, 1)
    ]
    assert not torch.equal(states[0], states[1])  # the ranks' RNG streams differ: the check has teeth
    _torchrun_optimize({**split, "resume": True}, tmp_path / "resumed.json")

    straight = read_trajectory(tmp_path / "straight" / "trajectory.csv")
    resumed = read_trajectory(tmp_path / "split" / "trajectory.csv")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert resumed == straight  # losses, measures and weights, bit for bit
    for kind in ("final", "mean", "ema"):
        a = json.loads((tmp_path / "straight" / f"weights_{kind}.json").read_text())["domain_weights"]
        b = json.loads((tmp_path / "split" / f"weights_{kind}.json").read_text())["domain_weights"]
        assert a == b

"""eval/experiments/noisy_mixture.py end to end at CI size (issue 18): its `--smoke` preset on tiny models,
the bundled 13 tasks plus the 3 planted ones, every condition trained and scored, the oracle leaving out
exactly the planted tasks, and the table counting the planted tasks each selection dropped."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from experiment_modules import load_experiment
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))

from dro_synthetic import write_stage_configs

BENCH = Path(__file__).parent / "fixtures" / "bench" / "beir" / "tinyfacts"
mc = load_experiment("mixture_comparison")
nm = load_experiment("noisy_mixture")


def test_smoke_preset_runs_every_condition_on_the_planted_mixture(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    optimize, finetune = write_stage_configs(tmp_path, tiny_encoder_dir, train_steps=2, optimize_steps=2,
                                             warmup_steps=1)
    spec = nm.parse_args(["--smoke", "--out", str(tmp_path / "out"), "--optimize-config", str(optimize),
                          "--finetune-config", str(finetune), "--benchmarks", str(BENCH), "--eval-batch-size", "16"])
    assert spec.seeds == [42] and spec.conditions == list(nm.CONDITIONS)
    assert spec.finetune_steps == spec.optimize_steps == spec.reference_steps == mc.SMOKE_STEPS
    assert spec.optimize_overrides == {"global_batch_size": 16}  # one example of each of the 16 tasks per step
    spec.show_progress = False
    result = mc.run_experiment(nm.with_planted_data(spec), console=Console(quiet=True))

    saved = json.loads(result.results_json.read_text())
    assert saved["complete"] is True and saved["experiment"] == "noisy_mixture"
    assert {c: saved["conditions"][c]["tasks"] for c in nm.CONDITIONS} == {
        "uniform": "16", "tdro-reweight": "16", "tdro-top70": "11", "loss-top70": "11", "excess-top70": "11",
        "oracle": "13",
    }
    trained = {run["condition"]: run["tasks"] for run in saved["runs"]}
    planted = set(nm.planted_names())
    assert planted <= set(trained["uniform"]) and not planted & set(trained["oracle"])
    assert all(0.0 <= run["value"] <= 1.0 for run in saved["runs"])

    dropped = result.table_md.read_text().split("left out")[1]
    assert "| oracle | " in dropped and "(3/3 planted)" in dropped.split("| oracle | ")[1].splitlines()[0]
    for name in ("tdro-top70", "loss-top70", "excess-top70"):
        line = dropped.split(f"| {name} | ")[1].splitlines()[0]
        kept = set(trained[name])
        assert f"({len(planted - kept)}/3 planted)" in line, line
    assert result.plot_png.read_bytes()[:4] == b"\x89PNG"

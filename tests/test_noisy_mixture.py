"""eval/experiments/noisy_mixture.py (issue 18): its presets and what it hands mixture_comparison's machinery
(the 16-task data, the oracle's mixture, tDRO's batch of one example per task, the dropped-task table), and
its `--smoke` preset end to end on tiny models: every condition trained on the bundled 13 tasks plus the 3
planted ones and scored, the oracle leaving out exactly the planted tasks, the table counting the planted
tasks each selection dropped."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from experiment_modules import load_experiment
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))

from dro_synthetic import write_stage_configs

from tdro_suite.data.mixture import read_mixture

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).parent / "fixtures" / "bench" / "beir" / "tinyfacts"
nm = load_experiment("noisy_mixture")
mc = nm.mc
PLANTED = ["shuffled_topic_verse_nave", "random_pairs", "trivial_copy"]


def test_smoke_and_full_presets() -> None:
    smoke = nm.parse_args(["--smoke"])
    assert smoke.seeds == [42] and smoke.benchmarks == ["bundled:miracl"] and smoke.out == nm.NOISY_SMOKE_OUT
    assert smoke.finetune_steps == smoke.optimize_steps == smoke.reference_steps == mc.SMOKE_STEPS
    assert smoke.conditions == ["uniform", "tdro-reweight", "tdro-top70", "loss-top70", "excess-top70", "oracle"]
    assert smoke.oracle_drops == PLANTED and smoke.optimize_overrides == {"global_batch_size": 16}
    assert smoke.experiment == "noisy_mixture" and smoke.data is None  # written only when the experiment runs
    full = nm.parse_args([])
    assert full.seeds == [42, 43, 44] and full.out == nm.NOISY_OUT and full.finetune_steps is None
    assert full.benchmarks == list(mc.DEFAULT_BENCHMARKS)
    assert nm.NOISY_SMOKE_OUT.name in (ROOT / "eval" / "experiments" / ".gitignore").read_text()


def test_stages_get_the_planted_data_the_oracle_mixture_and_one_example_per_task(tmp_path: Path) -> None:
    spec = nm.parse_args(["--smoke", "--out", str(tmp_path / "out")])
    nm.with_planted_data(spec)
    assert spec.data == [str(tmp_path / "out" / "runs" / "data" / "tasks.json")]
    optimize = mc.optimize_config(spec, "loss", 42, tmp_path / "opt", None)
    assert optimize.global_batch_size == 16 and optimize.data == spec.data and optimize.max_steps == mc.SMOKE_STEPS
    oracle = read_mixture(mc.oracle_mixture(spec))
    assert len(oracle.names) == 16
    assert [n for n, w in zip(oracle.names, oracle.weights, strict=True) if w == 0] == PLANTED
    assert len({w for w in oracle.weights if w > 0}) == 1  # the 13 real tasks, uniformly
    finetune = mc.finetune_config(spec, mc.CONDITIONS["oracle"], 42, tmp_path / "ft", mc.oracle_mixture(spec))
    assert finetune.mixture is not None and finetune.top_percent is None and finetune.data == spec.data
    from tdro_suite.data.tasks import training_tasks
    from tdro_suite.train.finetune import effective_mixture

    kept = effective_mixture(training_tasks(finetune.data), finetune.mixture, finetune.top_percent)
    assert list(kept.names) == [n for n in oracle.names if n not in PLANTED]  # the fine-tune trains on these 13


def test_dropped_tasks_mark_the_planted_ones() -> None:
    rows = [("tdro-top70", 1, ["a", "b"]), ("oracle", 1, ["a", "b", "c"]), ("uniform", 1, ["a", "b", "c", "p", "q"])]
    records = [mc.Record(c, s, "beir", "ndcg@10", 0.5, {}, t) for c, s, t in rows]
    table = mc.dropped_tasks(records, ["uniform", "tdro-top70", "oracle"], ["p", "q"])
    assert "| tdro-top70 | c, **p**, **q** (2/2 planted) |" in table
    assert "| oracle | **p**, **q** (2/2 planted) |" in table and "| uniform |" not in table


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

"""eval/experiments/noisy_mixture.py (issue 18): its presets and what it hands mixture_comparison's machinery
(the 16-task data, the oracle's mixture, tDRO's batch of one example per task, the dropped-task table).
Nothing here trains: the smoke experiment itself is not run by the tests."""

from __future__ import annotations

from pathlib import Path

from experiment_modules import load_experiment

from tdro_suite.data.mixture import read_mixture

ROOT = Path(__file__).resolve().parents[1]
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

"""eval/experiments/mixture_comparison.py on tiny models and planted tasks: every condition lands in the
table as mean ± std, the plot is written, and a resumed experiment reuses every finished run."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from experiment_modules import load_experiment
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))

from dro_synthetic import write_stage_configs

BENCH = Path(__file__).parent / "fixtures" / "bench" / "beir" / "tinyfacts"
MEAN_STD = re.compile(r"^\d+\.\d\d ± \d+\.\d\d$")
mc = load_experiment("mixture_comparison")


@pytest.fixture(scope="module")
def configs(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("experiment")
    optimize, finetune = write_stage_configs(root, tiny_encoder_dir, train_steps=3, optimize_steps=2, warmup_steps=2)
    return {"root": root, "optimize": optimize, "finetune": finetune}


def _spec(configs: dict[str, Path], seeds: list[int], **kw: object):
    return mc.ExperimentSpec(
        out=configs["root"] / "out", seeds=seeds, benchmarks=[str(BENCH)], optimize_config=configs["optimize"],
        finetune_config=configs["finetune"], eval_batch_size=16, show_progress=False, **kw,
    )


def test_experiment_table_plot_and_resume(configs: dict[str, Path]) -> None:
    runs = configs["root"] / "out" / "runs" / "seed-1"
    # a first, partial experiment (as if killed after two conditions)
    first = mc.run_experiment(_spec(configs, [1], conditions=["uniform", "tdro-top70"]), console=Console(quiet=True))
    assert {r.condition for r in first.records} == {"uniform", "tdro-top70"}
    ran_first = dict(first.seconds)
    stamp = (runs / "finetune-uniform" / "model" / "modules.json").stat().st_mtime_ns

    # the whole experiment: the reference, the relative weights and both finished models are reused
    console = Console(record=True, width=200)
    result = mc.run_experiment(_spec(configs, [1]), console=console)
    text = console.export_text()
    assert "reusing the uniform reference" in text and "reusing the tdro-top70 model" in text
    assert "reusing the relative weights" in text
    assert {k: result.seconds[k] for k in ran_first} == ran_first
    assert (runs / "finetune-uniform" / "model" / "modules.json").stat().st_mtime_ns == stamp
    # one reference for all measures, one tDRO run per measure, one fine-tune per condition
    assert sorted(k for k in result.seconds if "/eval-" not in k) == sorted(
        ["seed-1/reference", "seed-1/optimize-relative", "seed-1/optimize-loss", "seed-1/optimize-excess"]
        + [f"seed-1/finetune-{c}" for c in mc.DEFAULT_CONDITIONS]
    )
    assert not (runs / "optimize-loss" / "reference").exists()  # GroupDRO's measure needs no reference

    # results.json: every run's numbers
    saved = json.loads(result.results_json.read_text())
    assert saved["complete"] is True and len(saved["runs"]) == len(mc.DEFAULT_CONDITIONS)
    assert all(0.0 <= run["value"] <= 1.0 and run["metric"] == "ndcg@10" for run in saved["runs"])
    assert saved["conditions"]["uniform"]["tasks"] == "4" and saved["conditions"]["tdro-top70"]["tasks"] == "2"
    assert saved["conditions"]["tdro-reweight"]["tasks"] == "4" and saved["conditions"]["loss-top70"]["tasks"] == "2"

    # table.md: every condition, mean ± std per benchmark, the task counts; plot.png
    table = result.table_md.read_text()
    main_table = table.split("\n\n")[1]
    body = [line for line in main_table.splitlines() if line.startswith("| ") and not line.startswith("| condition")]
    assert len(body) == len(mc.DEFAULT_CONDITIONS)
    for name, line in zip(mc.DEFAULT_CONDITIONS, body, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0].startswith(f"{name}: ")
        assert cells[1] == ("2" if name.endswith("top70") else "4")
        assert MEAN_STD.match(cells[2]), cells[2]
    assert "tinyfacts nDCG@10" in table and "over 1 seed(s)" in table
    assert "paired by seed" in table and "| tdro-top70 | " in table.split("paired by seed")[1]
    assert "selection left out" in table
    assert result.plot_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a killed evaluation: only the missing result is recomputed, nothing retrains, the numbers come back
    killed = runs / "eval" / "excess-top70" / "tinyfacts" / "results.json"
    killed.unlink()
    again = mc.run_experiment(_spec(configs, [1]), console=Console(quiet=True))
    assert killed.is_file()
    trained = {k: v for k, v in result.seconds.items() if "/eval-" not in k}
    assert {k: v for k, v in again.seconds.items() if "/eval-" not in k} == trained
    assert [(r.condition, r.value) for r in again.records] == [(r.condition, r.value) for r in result.records]


def test_other_settings_are_refused(configs: dict[str, Path]) -> None:
    (configs["root"] / "refuse" / "runs").mkdir(parents=True, exist_ok=True)
    spec = _spec(configs, [1])
    spec.out = configs["root"] / "refuse"
    mc._check_settings(spec, Console(quiet=True))
    spec.finetune_steps = 2
    with pytest.raises(SystemExit, match=r"finetune\.max_steps"):
        mc._check_settings(spec, Console(quiet=True))


def test_task_schedule_reaches_the_fine_tunes_and_is_checked_on_reuse(configs: dict[str, Path]) -> None:
    """--task-schedule sets every condition's fine-tune; random (the default) leaves the settings as they were
    before the option existed, so older OUT folders stay reusable, and a stratified run is refused in them."""
    stratified = _spec(configs, [1], task_schedule="stratified")
    cfg = mc.finetune_config(stratified, mc.CONDITIONS["tdro-top70"], 1, configs["root"] / "probe", None)
    assert cfg.task_schedule == "stratified"
    assert "task_schedule" not in mc.settings(_spec(configs, [1]))["finetune"]
    out = configs["root"] / "schedule"
    (out / "runs").mkdir(parents=True)
    older = _spec(configs, [1])
    older.out = stratified.out = out
    mc._check_settings(older, Console(quiet=True))
    with pytest.raises(SystemExit, match=r"finetune\.task_schedule"):
        mc._check_settings(stratified, Console(quiet=True))
    assert mc.parse_args(["--task-schedule", "stratified"]).task_schedule == "stratified"
    assert mc.parse_args([]).task_schedule == "random"


def test_summary_mean_std_and_cli_presets() -> None:
    records = [mc.Record("uniform", s, "miracl", "ndcg@10", v, {}, ["a"]) for s, v in [(1, 0.2), (2, 0.4)]]
    (row,) = mc.summarize(records, ["uniform"], ["miracl"])
    assert row.n == 2 and mc.mean_std(row) == "30.00 ± 14.14"
    smoke = mc.parse_args(["--smoke"])
    assert smoke.seeds == [42] and smoke.benchmarks == ["bundled:miracl"] and smoke.out == mc.SMOKE_OUT
    assert smoke.finetune_steps == smoke.optimize_steps == smoke.reference_steps == mc.SMOKE_STEPS
    full = mc.parse_args(["--conditions", "uniform,tdro-top70", "--seeds", "2"])
    assert full.conditions == ["uniform", "tdro-top70"] and full.seeds == [42, 43] and full.out == mc.DEFAULT_OUT
    with pytest.raises(SystemExit):
        mc.parse_args(["--conditions", "nope"])


def test_paired_differences_and_dropped_tasks() -> None:
    rows = [("uniform", 1, 0.40, "abc"), ("uniform", 2, 0.50, "abc"), ("tdro-top70", 1, 0.43, "ab"),
            ("tdro-top70", 2, 0.49, "bc"), ("loss-top70", 1, 0.40, "ac")]
    records = [mc.Record(c, s, "beir", "ndcg@10", v, {}, list(t)) for c, s, v, t in rows]
    paired = mc.paired_differences(records, ["uniform", "tdro-top70", "loss-top70"])
    # seed 1: +3.00, seed 2: -1.00 → mean +1.00, sample std 2.83; loss-top70 has one seed: +0.00, std 0
    assert "| tdro-top70 | +1.00 ± 2.83 (1/2 higher) |" in paired
    assert "| loss-top70 | +0.00 ± 0.00 (0/1 higher) |" in paired
    assert "| uniform |" not in paired
    dropped = mc.dropped_tasks(records, ["uniform", "tdro-top70", "loss-top70"])
    assert "| tdro-top70 | c | a |" in dropped and "| loss-top70 | b | - |" in dropped
    assert "| uniform |" not in dropped

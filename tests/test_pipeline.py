"""`tdro-suite pipeline` end to end on tiny models and data: every stage runs, outputs land, resume reuses them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent / "dist_scripts"))

from dro_synthetic import write_stage_configs

from tdro_suite.data.mixture import read_mixture
from tdro_suite.index.dense_index import DenseIndex
from tdro_suite.pipeline.config import PipelineConfig
from tdro_suite.pipeline.run import PipelineResult, comparison_rows, run_pipeline, summary_table

BENCH = Path(__file__).parent / "fixtures" / "bench" / "beir" / "tinyfacts"


@pytest.fixture(scope="module")
def pipeline_config(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PipelineConfig:
    root = tmp_path_factory.mktemp("pipeline")
    optimize, finetune = write_stage_configs(root, tiny_encoder_dir, train_steps=4, optimize_steps=3)
    return PipelineConfig(
        output_dir=str(root / "run"), optimize_config=str(optimize), finetune_config=str(finetune),
        top_percent=50, benchmarks=[str(BENCH)], index_benchmark=str(BENCH), eval_batch_size=16,
    )


def test_pipeline_runs_every_stage_and_resumes(pipeline_config: PipelineConfig) -> None:
    console = Console(record=True, width=160)
    result = run_pipeline(pipeline_config, console=console)
    out = Path(pipeline_config.output_dir)

    weights = read_mixture(result.weights)
    assert sorted(weights.names) == ["easy", "map-a", "map-b", "noisy"]
    assert (result.model / "modules.json").is_file()
    kept = read_mixture(out / "finetune" / "mixture.json") if (out / "finetune" / "mixture.json").is_file() else None
    if kept is not None:  # top 50% of 4 tasks → 2 tasks, uniformly
        assert len([w for w in kept.weights if w > 0]) == 2
    index = DenseIndex.load(result.index)
    assert len(index) > 0
    _, hits = index.search(__import__("numpy").ones((1, index.manifest["dimension"]), dtype="float32"), 3)
    assert len(hits[0]) == 3 and index.get_doc(hits[0][0]) is not None

    rows = comparison_rows(result.results)
    assert {label for _, _, values in rows for label in values} == {"base", "tdro"}
    assert all(0.0 <= v <= 1.0 for _, _, values in rows for v in values.values())
    assert (out / "summary.md").read_text().startswith("| benchmark / collection |")
    console.print(summary_table(result))
    assert "tDRO fine-tuned" in console.export_text()
    assert result.serve_command() == f"tdro-suite serve --model {result.model} --index {result.index}"

    stamp = (result.model / "modules.json").stat().st_mtime_ns
    again_console = Console(record=True, width=160)
    again = run_pipeline(pipeline_config, console=again_console)
    assert "Reusing the fine-tuned model" in again_console.export_text()
    assert (again.model / "modules.json").stat().st_mtime_ns == stamp
    assert comparison_rows(again.results) == rows


def test_comparison_rows_mark_benchmarks_the_base_model_skipped() -> None:
    def run(value: float) -> dict:
        return {"main_metric": "ndcg@10", "average": {"ndcg@10": value},
                "collections": {"de": {"metrics": {"ndcg@10": value}}}}

    results = {"base": {"miracl": run(0.2)}, "tdro": {"beir": run(0.5), "miracl": run(0.3)}}
    rows = {name: values for name, _, values in comparison_rows(results)}
    assert rows["beir/average"] == {"base": None, "tdro": 0.5}
    assert rows["miracl/de"] == {"base": 0.2, "tdro": 0.3}
    table = summary_table(PipelineResult(Path("o"), Path("w"), Path("m"), Path("i"), results))
    console = Console(record=True, width=160)
    console.print(table)
    text = console.export_text()
    assert "+10.00" in text and "-" in text

"""Run the whole pipeline: train the uniform reference and learn tDRO weights, fine-tune with them,
evaluate the fine-tuned model on every benchmark (and the base model where asked, for comparison),
build the search index, and say how to serve the result. Each stage is the library function its own
command calls, with its own config.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tdro_suite.common.io import atomic_write_json, atomic_write_text
from tdro_suite.config import load_config
from tdro_suite.pipeline.config import PipelineConfig


@dataclass
class PipelineResult:
    """Where everything landed, plus the numbers people compare."""

    output_dir: Path
    weights: Path
    model: Path
    index: Path
    results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # label → bench → results
    seconds: dict[str, float] = field(default_factory=dict)

    def serve_command(self) -> str:
        return f"tdro-suite serve --model {self.model} --index {self.index}"


def run_pipeline(cfg: PipelineConfig, *, console: Console | None = None) -> PipelineResult:
    console = console or Console()
    out = Path(cfg.output_dir)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    weights = _optimize(cfg, out, console)
    seconds["tDRO (reference + weights)"] = time.perf_counter() - started

    started = time.perf_counter()
    model_dir, base_model = _finetune(cfg, out, weights, console)
    seconds["fine-tune"] = time.perf_counter() - started

    results: dict[str, dict[str, dict[str, Any]]] = {}
    started = time.perf_counter()
    base_benchmarks = cfg.benchmarks if cfg.base_benchmarks is None else cfg.base_benchmarks
    runs = {"base": (base_model, base_benchmarks), "tdro": (str(model_dir), cfg.benchmarks)}
    for label, (model, benchmarks) in runs.items():
        if benchmarks:
            results[label] = _evaluate(out, label, model, benchmarks, cfg, console)
    seconds["evaluate"] = time.perf_counter() - started

    started = time.perf_counter()
    index_dir = _index(cfg, out, model_dir, console)
    seconds["index"] = time.perf_counter() - started

    result = PipelineResult(out, weights, model_dir, index_dir, results, seconds)
    _write_summary(result)
    return result


def _optimize(cfg: PipelineConfig, out: Path, console: Console) -> Path:
    from tdro_suite.dro.config import OptimizeConfig
    from tdro_suite.dro.optimize import run_optimize

    console.rule("[bold]1/4 tDRO: uniform reference, then the robust mixture")
    opt = load_config(
        OptimizeConfig,
        cfg.optimize_config,
        {"output_dir": str(out / "optimize"), "resume": cfg.resume, "overwrite": not cfg.resume},
    )
    weights = run_optimize(opt, console=console).weights
    assert weights is not None  # the pipeline's optimize config does not stop early
    return weights


def _finetune(cfg: PipelineConfig, out: Path, weights: Path, console: Console) -> tuple[Path, str]:
    from tdro_suite.train.config import FinetuneConfig
    from tdro_suite.train.finetune import exported_model, run_finetune

    transfer = f"top {cfg.top_percent:g}% of tasks" if cfg.transfer == "top-percent" else "tasks sampled by weight"
    console.rule(f"[bold]2/4 Fine-tune with the tDRO mixture ({transfer})")
    overrides: dict[str, Any] = {
        "output_dir": str(out / "finetune"),
        "mixture": str(weights),
        "resume": cfg.resume,
        "overwrite": not cfg.resume,
    }
    if cfg.transfer == "top-percent":
        overrides["top_percent"] = cfg.top_percent
    ft = load_config(FinetuneConfig, cfg.finetune_config, overrides)
    exported = exported_model(ft.output_dir)
    if cfg.resume and exported is not None:
        console.print(f"Reusing the fine-tuned model in {exported}")
        return exported, ft.model
    model_dir = run_finetune(ft, console=console).model_dir
    assert model_dir is not None  # the pipeline's finetune config does not stop early
    return model_dir, ft.model


def _evaluate(
    out: Path, label: str, model: str, benchmarks: list[str], cfg: PipelineConfig, console: Console
) -> dict[str, dict[str, Any]]:
    from tdro_suite.evaluation.harness import evaluate_model

    console.rule(f"[bold]3/4 Evaluate the {'base' if label == 'base' else 'fine-tuned'} model ({model})")

    def report(bench: str, results: dict[str, Any], seconds: float) -> None:
        metric = results["main_metric"]
        console.print(f"{bench}: {metric} = {results['average'].get(metric, float('nan')):.4f}")

    return evaluate_model(
        model, benchmarks, out / "eval" / label, reuse=cfg.resume, on_done=report,
        batch_size=cfg.eval_batch_size, cache_root=out / "embeddings",
    )


def _index(cfg: PipelineConfig, out: Path, model_dir: Path, console: Console) -> Path:
    """Index the chosen benchmark's corpus, reusing the embeddings its evaluation already cached."""
    from tdro_suite.evaluation.benchmarks import load_benchmark
    from tdro_suite.index.build import build_index
    from tdro_suite.index.corpus import corpus_hash
    from tdro_suite.index.encode import encoder_fingerprint
    from tdro_suite.modeling import Encoder

    console.rule(f"[bold]4/4 Build the {cfg.index_type} search index over the {cfg.index_benchmark} corpus")
    index_dir = out / "index"
    encoder = Encoder.from_pretrained(model_dir)
    docs = load_benchmark(cfg.index_benchmark).collections[0].corpus
    cache = out / "embeddings" / encoder_fingerprint(encoder) / corpus_hash(docs)
    build_index(
        encoder, docs, index_dir, index_type=cfg.index_type, batch_size=cfg.eval_batch_size,
        work_dir=cache, keep_shards=True,
    )
    return index_dir


def comparison_rows(
    results: dict[str, dict[str, dict[str, Any]]],
) -> list[tuple[str, str, dict[str, float | None]]]:
    """(benchmark/collection, metric, {label: value or None}) for every collection and each benchmark's average.

    Rows follow the fine-tuned model's benchmarks; a model not scored on a benchmark gets None there.
    """
    rows: list[tuple[str, str, dict[str, float | None]]] = []
    for bench, res in results.get("tdro", {}).items():
        metric = res["main_metric"]
        for name in [*res["collections"], "average"]:
            values: dict[str, float | None] = {}
            for label, by_bench in results.items():
                run = by_bench.get(bench)
                if run is None:
                    values[label] = None
                    continue
                block = run["average"] if name == "average" else run["collections"][name]["metrics"]
                values[label] = float(block[metric])
            rows.append((f"{bench}/{name}", metric, values))
    return rows


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def summary_table(result: PipelineResult) -> Table:
    labels = list(result.results)
    table = Table(title="Retrieval quality (x100)")
    table.add_column("benchmark / collection")
    table.add_column("metric")
    for label in labels:
        table.add_column("base model" if label == "base" else "tDRO fine-tuned", justify="right")
    compare = "base" in labels and "tdro" in labels
    if compare:
        table.add_column("change", justify="right")
    for name, metric, values in comparison_rows(result.results):
        cells = [_pct(values[label]) for label in labels]
        if compare:
            base, tuned = values["base"], values["tdro"]
            cells.append("-" if base is None or tuned is None else f"{100 * (tuned - base):+.2f}")
        table.add_row(name, metric, *cells, style="bold" if name.endswith("/average") else None)
    return table


def _write_summary(result: PipelineResult) -> None:
    rows = comparison_rows(result.results)
    labels = list(result.results)
    atomic_write_json(
        result.output_dir / "summary.json",
        {
            "weights": str(result.weights),
            "model": str(result.model),
            "index": str(result.index),
            "serve_command": result.serve_command(),
            "seconds": {k: round(v, 1) for k, v in result.seconds.items()},
            "results": [{"collection": n, "metric": m, **v} for n, m, v in rows],
        },
    )
    lines = ["| benchmark / collection | metric | " + " | ".join(labels) + " |", "|---|---|" + "---:|" * len(labels)]
    lines += [f"| {n} | {m} | " + " | ".join(_pct(v[label]) for label in labels) + " |" for n, m, v in rows]
    atomic_write_text(result.output_dir / "summary.md", "\n".join(lines) + "\n")

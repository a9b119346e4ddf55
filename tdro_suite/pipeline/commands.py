"""`tdro-suite pipeline`: the whole journey on one config (the README's demo runs it)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tdro_suite.config import load_config
from tdro_suite.pipeline.config import PipelineConfig

console = Console()


def pipeline(
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Run folder \\[runs/pipeline]."),
    optimize_config: Path = typer.Option(None, "--optimize-config", help="tDRO config (also trains the reference)."),
    finetune_config: Path = typer.Option(None, "--finetune-config", help="Fine-tuning config."),
    transfer: str = typer.Option(None, "--transfer", help="top-percent | reweight \\[top-percent]."),
    top_percent: float = typer.Option(None, "--top-percent", help="Tasks kept by weight, in percent \\[70]."),
    benchmarks: str = typer.Option(None, "--benchmarks", help="Comma-separated \\[beir,miracl,mkqa]."),
    base_benchmarks: str = typer.Option(
        None, "--base-benchmarks", help="Benchmarks to score the base model on too \\[all]; 'none' for none."
    ),
    index_type: str = typer.Option(None, "--index-type", help="flat|hnsw|ivf-flat|ivf-pq|sq8 \\[flat]."),
    resume: bool = typer.Option(None, "--resume/--restart", help="Reuse finished stages in the run folder \\[resume]."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML file with any of these options."),
) -> None:
    """Run everything: uniform reference + tDRO weights → fine-tune → evaluate → index → how to serve."""
    from tdro_suite.pipeline.run import run_pipeline, summary_table

    cfg = load_config(
        PipelineConfig,
        config,
        {
            "output_dir": str(output_dir) if output_dir else None,
            "optimize_config": str(optimize_config) if optimize_config else None,
            "finetune_config": str(finetune_config) if finetune_config else None,
            "transfer": transfer,
            "top_percent": top_percent,
            "benchmarks": _bench_list(benchmarks),
            "base_benchmarks": _bench_list(base_benchmarks),
            "index_type": index_type,
            "resume": resume,
        },
    )
    result = run_pipeline(cfg, console=console)
    console.print(summary_table(result))
    for stage, secs in result.seconds.items():
        console.print(f"  {stage:<28} {secs / 60:5.1f} min")
    console.print(f"tDRO weights:     {result.weights}  (plot: {result.weights.with_name('weights.png')})")
    console.print(f"fine-tuned model: {result.model}")
    console.print(f"search index:     {result.index}")
    console.print(f"summary:          {result.output_dir / 'summary.md'}")
    console.print(f"Serve it:\n  [bold]{result.serve_command()}[/bold]", highlight=False)


def _bench_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [] if text.strip().lower() == "none" else [b.strip() for b in text.split(",") if b.strip()]


def register(app: typer.Typer) -> None:
    app.command("pipeline")(pipeline)

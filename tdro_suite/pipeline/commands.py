"""`tdro-suite pipeline`: the whole journey on one config (the README's demo runs it).

Options are generated from `PipelineConfig` (see `tdro_suite.cli_options`).
"""

from __future__ import annotations

import typer
from rich.console import Console

from tdro_suite.cli_options import Opt, config_command
from tdro_suite.pipeline.config import PipelineConfig

console = Console()


@config_command(
    PipelineConfig,
    options={
        "benchmarks": Opt(split=","),
        "base_benchmarks": Opt(split=","),
        "resume": Opt(("--resume/--restart",)),
    },
)
def pipeline(cfg: PipelineConfig) -> None:
    """Run everything: uniform reference + tDRO weights → fine-tune → evaluate → index → how to serve."""
    from tdro_suite.pipeline.run import run_pipeline, summary_table

    result = run_pipeline(cfg, console=console)
    console.print(summary_table(result))
    for stage, secs in result.seconds.items():
        console.print(f"  {stage:<28} {secs / 60:5.1f} min")
    console.print(f"tDRO weights:     {result.weights}  (plot: {result.weights.with_name('weights.png')})")
    console.print(f"fine-tuned model: {result.model}")
    console.print(f"search index:     {result.index}")
    console.print(f"summary:          {result.output_dir / 'summary.md'}")
    console.print(f"Serve it:\n  [bold]{result.serve_command()}[/bold]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("pipeline")(pipeline)

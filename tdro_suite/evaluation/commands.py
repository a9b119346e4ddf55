"""CLI command of the evaluation stage: `eval` (options generated from `EvalConfig`, work in `evaluation.run`)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from tdro_suite.cli_options import Opt, config_command
from tdro_suite.common.errors import TdroError
from tdro_suite.evaluation.config import EvalConfig

console = Console()
DRY_RUN: Any = typer.Option(
    False, "--dry-run", help="Print what would be fetched (sources, pinned revisions, sizes) or that it is cached; "
    "load no model. Exits non-zero when the benchmark cannot be fetched from here.",
)


@config_command(
    EvalConfig,
    options={
        "bench": Opt(("-b",)),
        "langs": Opt(split=","),
        "k_values": Opt(("--k",), split=","),
        "use_cache": Opt(("--cache/--no-cache",)),
    },
)
def eval_command(cfg: EvalConfig, dry_run: bool = DRY_RUN) -> None:
    """Evaluate a model on BEIR / MIRACL / MKQA: results.json + results.md (per collection and averaged)."""
    if dry_run:
        from tdro_suite.evaluation.run import plan_eval

        lines, problem = plan_eval(cfg)
        for line in lines:
            console.print(line, highlight=False, soft_wrap=True)
        if problem:
            raise TdroError(problem)
        return
    from rich.markdown import Markdown  # markdown-it: too slow an import for every `--help`

    from tdro_suite.evaluation.run import run_eval

    results, out_dir = run_eval(cfg)
    if results is None:  # a torchrun process other than the first: the first prints the report
        return
    console.print(Markdown((out_dir / "results.md").read_text(encoding="utf-8")))
    main = results["main_metric"]
    console.print(f"{main} (average): {results['average'].get(main, float('nan')):.4f}  → {out_dir}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)

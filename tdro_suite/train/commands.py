"""`tdro-suite finetune`: fine-tune a dense retriever on a task mixture (a thin shell over `run_finetune`).

Its options are generated from `FinetuneConfig` (see `tdro_suite.cli_options`).
"""

from __future__ import annotations

import typer
from rich.console import Console

from tdro_suite.cli_options import DRY_RUN_OPTION, config_command, show_plan
from tdro_suite.train.config import FinetuneConfig


@config_command(FinetuneConfig)
def finetune(cfg: FinetuneConfig, dry_run: bool = DRY_RUN_OPTION) -> None:
    """Fine-tune a dense retriever (homogeneous batches, hard + in-batch + cross-device negatives) → RUN/model."""
    if dry_run:
        from tdro_suite.train.finetune import plan_finetune

        return show_plan(plan_finetune(cfg))
    from tdro_suite.train.finetune import run_finetune

    run_finetune(cfg, console=Console())  # prints where its outputs are; joins and leaves torchrun's group


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)

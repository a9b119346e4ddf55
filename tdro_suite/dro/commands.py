"""`tdro-suite optimize`: learn task weights with tDRO (proxy + frozen reference).

Its options are generated from `OptimizeConfig` (see `tdro_suite.cli_options`); the task files are
positional.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from tdro_suite.cli_options import DRY_RUN_OPTION, Opt, config_command, show_plan
from tdro_suite.config import load_config
from tdro_suite.dro.config import OptimizeConfig


def load_optimize_config(path: Path | None, overrides: dict[str, Any]) -> OptimizeConfig:
    """`load_config`, but a --reference given on the command line replaces `train_reference: true` from the file."""
    if overrides.get("reference") and overrides.get("train_reference") is None:
        overrides = {**overrides, "train_reference": False}
    return load_config(OptimizeConfig, path, overrides)


@config_command(
    OptimizeConfig,
    loader=load_optimize_config,
    options={"data": Opt(argument=True)},
)
def optimize(cfg: OptimizeConfig, dry_run: bool = DRY_RUN_OPTION) -> None:
    """Learn task weights with tDRO; writes RUN/weights.json (readable by `finetune --mixture`)."""
    if dry_run:
        from tdro_suite.dro.optimize import plan_optimize

        return show_plan(plan_optimize(cfg))
    from tdro_suite.dro.optimize import run_optimize

    run_optimize(cfg, console=Console())  # prints where its outputs are; joins and leaves torchrun's group


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize)

"""CLI commands of the modeling stage: `env` (what would run where) and `encode` (texts → vectors)."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from tdro_suite.cli_options import JSON_OPTION, Opt, config_command
from tdro_suite.modeling.config import EncodeConfig

console = Console()


def env(as_json: bool = JSON_OPTION) -> None:
    """Show library versions, GPUs and the device/dtype tdro-suite would use."""
    from tdro_suite.common.environment import environment_report

    report = environment_report()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title="tdro-suite environment", show_header=False)
    for key, value in report.items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
    console.print(table)


@config_command(EncodeConfig, options={"input": Opt(argument=True)})
def encode(cfg: EncodeConfig) -> None:
    """Encode texts into L2-normalised vectors (.npy) plus an ids file."""
    from tdro_suite.modeling.encode_texts import run_encode

    out, ids_out, count = run_encode(cfg)
    console.print(f"Encoded {count} texts → {out} (ids: {ids_out})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("env")(env)
    app.command("encode")(encode)

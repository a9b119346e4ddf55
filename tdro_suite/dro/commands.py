"""`tdro-suite optimize`: learn task weights with tDRO (proxy + frozen reference)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tdro_suite.config import load_config
from tdro_suite.dro.config import OptimizeConfig


def optimize(
    data: list[Path] = typer.Argument(
        None,
        help="Task manifests (tasks.json), folders or .jsonl(.gz) files (default: the bundled mixture).",
        show_default=False,
    ),
    config: Path = typer.Option(None, "--config", "-c", help="YAML file with any of the options below."),
    model: str = typer.Option(None, "--model", "-m", help="Base model the proxy starts from (default: minilm)."),
    reference: str = typer.Option(
        None, "--reference", help="Frozen reference: a model fine-tuned on the uniform mixture."
    ),
    train_reference: bool = typer.Option(
        None, "--train-reference/--no-train-reference", help="Fine-tune the reference here first (uniform mixture)."
    ),
    reference_config: Path = typer.Option(
        None, "--reference-config", help="Finetune YAML used by --train-reference (default: the finetune defaults)."
    ),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Run folder (default: runs/optimize)."),
    measure: str = typer.Option(None, "--measure", help="relative (tDRO) | loss (GroupDRO) | excess (DoReMi)."),
    steps: int = typer.Option(None, "--steps", help="Optimizer steps (default: 1000)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Global batch (all processes, all micro-batches)."),
    grad_accumulation: int = typer.Option(None, "--grad-accumulation", help="Micro-batches per optimizer step."),
    hard_negatives: int = typer.Option(None, "--hard-negatives", help="Hard negatives per query (default: 7)."),
    step_size: float = typer.Option(None, "--step-size", help="Weight step size η (default: 0.02)."),
    temperature: float = typer.Option(None, "--temperature", help="InfoNCE temperature τ (default: 0.002)."),
    learning_rate: float = typer.Option(None, "--learning-rate", "--lr", help="Proxy AdamW lr (default: 1e-4)."),
    weights_output: str = typer.Option(None, "--weights-output", help="final | mean | ema: what weights.json holds."),
    initial_weights: Path = typer.Option(None, "--initial-weights", help="Initial weights (default: uniform)."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... (default: auto)."),
    seed: int = typer.Option(None, "--seed", help="Seed of batch draws and initialisation (default: 42)."),
    save_every: int = typer.Option(None, "--save-every", help="Checkpoint every N steps (0: only at the end)."),
    resume: bool = typer.Option(None, "--resume/--no-resume", help="Continue from the run folder's checkpoint."),
    overwrite: bool = typer.Option(None, "--overwrite", help="Start over in a run folder that holds a run."),
) -> None:
    """Learn task weights with tDRO; writes RUN/weights.json (readable by `finetune --mixture`)."""
    from tdro_suite.dro.optimize import run_optimize

    cfg = load_config(
        OptimizeConfig,
        config,
        {
            "data": [str(p) for p in data] if data else None,
            "model": model,
            "reference": reference,
            # a --reference given here replaces a train_reference: true from the file
            "train_reference": False if reference and train_reference is None else train_reference,
            "reference_config": str(reference_config) if reference_config else None,
            "output_dir": str(output_dir) if output_dir else None,
            "measure": measure,
            "steps": steps,
            "batch_size": batch_size,
            "grad_accumulation": grad_accumulation,
            "hard_negatives": hard_negatives,
            "step_size": step_size,
            "temperature": temperature,
            "learning_rate": learning_rate,
            "weights_output": weights_output,
            "initial_weights": str(initial_weights) if initial_weights else None,
            "device": device,
            "seed": seed,
            "save_every": save_every,
            "resume": resume,
            "overwrite": overwrite,
        },
    )
    run_dir = run_optimize(cfg, console=Console())
    Console().print(f"Run folder: {run_dir}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize)

"""`tdro-suite finetune`: fine-tune a dense retriever on a task mixture (a thin shell over `run_finetune`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from tdro_suite.config import load_config
from tdro_suite.train.config import FinetuneConfig


def finetune(
    config: Path = typer.Option(None, "--config", "-c", help="YAML file with any of the options below."),
    data: list[Path] = typer.Option(
        None, "--data", help="Task manifest, folder or .jsonl(.gz) file; repeatable (default: the bundled mixture)."
    ),
    mixture: Path = typer.Option(None, "--mixture", help="Weights file, e.g. optimize's weights.json."),
    top_percent: float = typer.Option(None, "--top-percent", help="Keep the top-P% tasks by weight, uniformly."),
    model: str = typer.Option(None, "--model", "-m", help="Folder, bundled alias or hub id (default: minilm)."),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Run folder (default: runs/finetune)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Optimizer steps (default: 100)."),
    per_device_batch_size: int = typer.Option(None, "--per-device-batch-size", "--batch-size",
                                              help="Queries per process per micro-batch (default: 32)."),
    grad_accumulation: int = typer.Option(None, "--grad-accumulation", help="Micro-batches per step (default: 1)."),
    hard_negatives: int = typer.Option(None, "--hard-negatives", help="Hard negatives per query (default: 1)."),
    temperature: float = typer.Option(None, "--temperature", help="InfoNCE temperature τ (default: 0.02)."),
    learning_rate: float = typer.Option(None, "--learning-rate", "--lr", help="Peak AdamW lr (default: 1e-4)."),
    warmup_steps: int = typer.Option(None, "--warmup-steps", help="Linear warmup steps (default: 0)."),
    min_lr_ratio: float = typer.Option(None, "--min-lr-ratio", help="Cosine decays to lr × this (default: 0)."),
    query_max_length: int = typer.Option(None, "--query-max-length", help="Query tokens (default: 128)."),
    passage_max_length: int = typer.Option(None, "--passage-max-length", help="Passage tokens (default: 512)."),
    lora: bool = typer.Option(None, "--lora/--no-lora", help="Train LoRA adapters instead of all weights."),
    lora_rank: int = typer.Option(None, "--lora-rank", help="LoRA rank (default: 16)."),
    gradient_checkpointing: bool = typer.Option(
        None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations to save memory."
    ),
    gradcache: bool = typer.Option(None, "--gradcache/--no-gradcache", help="Chunked forward with cached gradients."),
    gradcache_chunk_size: int = typer.Option(None, "--gradcache-chunk-size", help="Texts per chunk (default: 16)."),
    precision: str = typer.Option(None, "--precision", help="auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16."),
    seed: int = typer.Option(None, "--seed", help="Seed of task draws, sampling and initialisation (default: 42)."),
    save_steps: int = typer.Option(None, "--save-steps", help="Checkpoint every N steps (default: 0 = none)."),
    resume: bool = typer.Option(None, "--resume/--no-resume", help="Continue from the latest checkpoint."),
    overwrite: bool = typer.Option(None, "--overwrite", help="Start over in a run folder that holds checkpoints."),
    stop_after_steps: int = typer.Option(None, "--stop-after-steps",
                                         help="Checkpoint and stop at this step (resume later)."),
) -> None:
    """Fine-tune a dense retriever (homogeneous batches, hard + in-batch + cross-device negatives) → RUN/model."""
    from tdro_suite.train.finetune import run_finetune

    cfg = load_config(
        FinetuneConfig,
        config,
        {
            "data": [str(p) for p in data] if data else None,
            "mixture": str(mixture) if mixture else None,
            "top_percent": top_percent,
            "model": model,
            "output_dir": str(output_dir) if output_dir else None,
            "max_steps": max_steps,
            "per_device_batch_size": per_device_batch_size,
            "grad_accumulation": grad_accumulation,
            "hard_negatives": hard_negatives,
            "temperature": temperature,
            "learning_rate": learning_rate,
            "warmup_steps": warmup_steps,
            "min_lr_ratio": min_lr_ratio,
            "query_max_length": query_max_length,
            "passage_max_length": passage_max_length,
            "lora": lora,
            "lora_rank": lora_rank,
            "gradient_checkpointing": gradient_checkpointing,
            "gradcache": gradcache,
            "gradcache_chunk_size": gradcache_chunk_size,
            "precision": precision,
            "seed": seed,
            "save_steps": save_steps,
            "resume": resume,
            "overwrite": overwrite,
            "stop_after_steps": stop_after_steps,
        },
    )
    result = run_finetune(cfg, console=Console())
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        Console().print(f"Output: {result}", highlight=False)
    state.destroy_process_group()  # the command is the process's last work: leave the group cleanly


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)

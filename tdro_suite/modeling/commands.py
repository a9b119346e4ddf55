"""CLI commands of the modeling stage: `env` (what would run where) and `encode` (texts → vectors)."""

from __future__ import annotations

import importlib.metadata
import json
import platform
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tdro_suite.config import load_config
from tdro_suite.modeling.config import EncodeConfig

console = Console()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment_report() -> dict[str, object]:
    """Versions and hardware that decide where and how fast tdro-suite runs."""
    import faiss
    import torch

    from tdro_suite import __version__
    from tdro_suite.common.device import default_dtype, resolve_device

    cuda = torch.cuda.is_available()
    device = resolve_device(None)
    return {
        "tdro-suite": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch CUDA build": torch.version.cuda or "none (CPU build)",
        "CUDA available": cuda,
        "GPU count": torch.cuda.device_count() if cuda else 0,
        "GPUs": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "CPU threads": torch.get_num_threads(),
        "faiss": getattr(faiss, "__version__", _version("faiss-cpu")),
        "faiss GPUs": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
        "transformers": _version("transformers"),
        "sentence-transformers": _version("sentence-transformers"),
        "peft": _version("peft"),
        "accelerate": _version("accelerate"),
        "deepspeed": _version("deepspeed"),
        "default device": str(device),
        "default dtype": str(default_dtype(device)).replace("torch.", ""),
    }


def env(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Show library versions, GPUs and the device/dtype tdro-suite would use."""
    report = environment_report()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title="tdro-suite environment", show_header=False)
    for key, value in report.items():
        table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
    console.print(table)


def encode(
    input: str = typer.Argument(None, help="Text file (one text per line, or JSON lines), or '-' for stdin."),
    output: Path = typer.Option(None, "--output", "-o", help="Where to write the vectors (.npy)."),
    model: str = typer.Option(None, "--model", "-m", help="Model folder, bundled alias or hub id \\[minilm]."),
    ids_output: Path = typer.Option(None, "--ids-output", help="Ids file \\[OUTPUT with .ids.txt]."),
    input_format: str = typer.Option(None, "--input-format", help="auto | lines | jsonl \\[auto]."),
    text_field: str = typer.Option(None, "--text-field", help="JSON field holding the text \\[text]."),
    id_field: str = typer.Option(None, "--id-field", help="JSON field holding the id \\[id]."),
    batch_size: int = typer.Option(None, "--batch-size", help="Texts per forward pass \\[32]."),
    max_length: int = typer.Option(None, "--max-length", help="Tokens per text \\[the model's]."),
    prompt: str = typer.Option(None, "--prompt", help="Literal prefix put before every text."),
    prompt_name: str = typer.Option(None, "--prompt-name", help="query | passage: the model's stored prompt."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... \\[auto]."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML file with any of these options."),
) -> None:
    """Encode texts into L2-normalised vectors (.npy) plus an ids file."""
    from tdro_suite.modeling.encode_texts import run_encode

    cfg = load_config(
        EncodeConfig,
        config,
        {
            "input": input,
            "output": str(output) if output else None,
            "model": model,
            "ids_output": str(ids_output) if ids_output else None,
            "input_format": input_format,
            "text_field": text_field,
            "id_field": id_field,
            "batch_size": batch_size,
            "max_length": max_length,
            "prompt": prompt,
            "prompt_name": prompt_name,
            "device": device,
        },
    )
    out, ids_out, count = run_encode(cfg)
    console.print(f"Encoded {count} texts → {out} (ids: {ids_out})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("env")(env)
    app.command("encode")(encode)

"""CLI command of the evaluation stage: `eval`."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.console import Console
from rich.markdown import Markdown

from tdro_suite.config import load_config
from tdro_suite.evaluation.config import EvalConfig
from tdro_suite.index.commands import EF_SEARCH_OPTION, NPROBE_OPTION

console = Console()


def default_output(bench: str, model: str) -> Path:
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text).name or text).strip("-") or "x"

    return Path("outputs") / "eval" / f"{slug(bench)}-{slug(model)}"


def eval_command(
    bench: str = typer.Option(None, "--bench", "-b", help="beir | miracl | mkqa (bundled) or a benchmark folder."),
    model: str = typer.Option(None, "--model", "-m", help="Model folder, bundled alias or hub id \\[minilm]."),
    split: str = typer.Option(None, "--split", help="Qrels split \\[BEIR test, MIRACL dev]."),
    langs: str = typer.Option(None, "--langs", help="Comma-separated MIRACL/MKQA languages or BEIR datasets \\[all]."),
    index_type: str = typer.Option(None, "--index-type", help="flat|hnsw|ivf-flat|ivf-pq|sq8|factory \\[flat]."),
    nprobe: int = NPROBE_OPTION,
    ef_search: int = EF_SEARCH_OPTION,
    k_values: str = typer.Option(None, "--k", help="Comma-separated cutoffs \\[1,3,5,10,100; MKQA 1,5,20,100]."),
    instruction: str = typer.Option(None, "--instruction", help="Query instruction \\[the model's query prompt]."),
    batch_size: int = typer.Option(None, "--batch-size", help="Texts per forward pass \\[32]."),
    max_length: int = typer.Option(None, "--max-length", help="Tokens per text \\[the model's]."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, ... \\[auto]."),
    output: Path = typer.Option(None, "--output", "-o", help="Folder for results.json / results.md."),
    use_cache: bool = typer.Option(None, "--cache/--no-cache", help="Reuse cached corpus embeddings \\[yes]."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML file with any of these options."),
) -> None:
    """Evaluate a model on BEIR / MIRACL / MKQA: results.json + results.md (per collection and averaged)."""
    from tdro_suite.evaluation.benchmarks import load_benchmark
    from tdro_suite.evaluation.harness import evaluate
    from tdro_suite.modeling import Encoder

    cfg = load_config(
        EvalConfig,
        config,
        {
            "bench": bench,
            "model": model,
            "split": split,
            "langs": langs,
            "index_type": index_type,
            "nprobe": nprobe,
            "ef_search": ef_search,
            "k_values": k_values,
            "instruction": instruction,
            "batch_size": batch_size,
            "max_length": max_length,
            "device": device,
            "output": str(output) if output else None,
            "use_cache": use_cache,
        },
    )
    benchmark = load_benchmark(cfg.bench, split=cfg.split, langs=cfg.langs)  # fail on bad data before loading a model
    encoder = Encoder.from_pretrained(cfg.model, max_length=cfg.max_length, device=cfg.device)
    out_dir = Path(cfg.output) if cfg.output else default_output(cfg.bench, cfg.model)
    results = evaluate(
        encoder, benchmark, index_type=cfg.index_type, search_params=cfg.search_params(), k_values=cfg.k_values,
        batch_size=cfg.batch_size, instruction=cfg.instruction, use_cache=cfg.use_cache, shard_size=cfg.shard_size,
        out_dir=out_dir,
    )
    console.print(Markdown((out_dir / "results.md").read_text(encoding="utf-8")))
    main = results["main_metric"]
    console.print(f"{main} (average): {results['average'].get(main, float('nan')):.4f}  → {out_dir}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)

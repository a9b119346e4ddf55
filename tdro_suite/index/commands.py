"""CLI commands of the index stage: `index` (build a FAISS index folder) and `search`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tdro_suite.config import load_config
from tdro_suite.index.config import IndexConfig, SearchConfig

console = Console()

# The search knobs of every command that builds an index (index, eval).
NPROBE_OPTION = typer.Option(None, "--nprobe", help="IVF cells visited per query \\[max(8, nlist/32)].")
EF_SEARCH_OPTION = typer.Option(None, "--ef-search", help="HNSW search breadth \\[128].")


def index(
    corpus: list[Path] = typer.Option(
        None, "--corpus", help="Corpus file(s): jsonl\\[.gz] with _id/docid, title, text (repeatable)."
    ),
    output: Path = typer.Option(None, "--output", "-o", help="Index folder to write."),
    model: str = typer.Option(None, "--model", "-m", help="Model folder, bundled alias or hub id \\[minilm]."),
    index_type: str = typer.Option(
        None, "--index-type", help="flat | hnsw | ivf-flat | ivf-pq | sq8, or a FAISS factory string \\[flat]."
    ),
    nprobe: int = NPROBE_OPTION,
    ef_search: int = EF_SEARCH_OPTION,
    batch_size: int = typer.Option(None, "--batch-size", help="Texts per forward pass \\[32]."),
    shard_size: int = typer.Option(None, "--shard-size", help="Documents per resumable shard \\[8192]."),
    max_length: int = typer.Option(None, "--max-length", help="Tokens per document \\[the model's]."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1, ... \\[auto; LOCAL_RANK under torchrun]."),
    store_docs: bool = typer.Option(None, "--store-docs/--no-store-docs", help="Keep titles/texts \\[yes]."),
    keep_shards: bool = typer.Option(None, "--keep-shards", help="Keep the encoded shards after the build."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML file with any of these options."),
) -> None:
    """Encode a corpus (sharded, resumable; torchrun splits it across processes) and build a FAISS index."""
    from tdro_suite.index.build import build_index
    from tdro_suite.index.encode import dist_info, init_distributed
    from tdro_suite.modeling import Encoder

    cfg = load_config(
        IndexConfig,
        config,
        {
            "corpus": [str(p) for p in corpus] if corpus else None,
            "output": str(output) if output else None,
            "model": model,
            "index_type": index_type,
            "nprobe": nprobe,
            "ef_search": ef_search,
            "batch_size": batch_size,
            "shard_size": shard_size,
            "max_length": max_length,
            "device": device,
            "store_docs": store_docs,
            "keep_shards": keep_shards,
        },
    )
    info = dist_info()
    init_distributed(info)
    device_name = cfg.device
    if device_name is None and info.world_size > 1:
        import torch

        device_name = f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu"
    encoder = Encoder.from_pretrained(cfg.model, max_length=cfg.max_length, device=device_name)
    built = build_index(
        encoder, cfg.corpus, cfg.output, index_type=cfg.index_type, search_params=cfg.search_params(),
        batch_size=cfg.batch_size,
        shard_size=cfg.shard_size, store_docs=cfg.store_docs, keep_shards=cfg.keep_shards, info=info,
    )
    if built is not None:
        m = built.manifest
        console.print(
            f"Indexed {len(built)} documents with {cfg.model} ({m['dimension']}-d, {m['index_type']}: {m['factory']}) "
            f"→ {cfg.output}  [encode {m['encode_seconds']:.1f}s, build {m['build_seconds']:.1f}s]",
            highlight=False,
        )


def search(
    index_dir: Path = typer.Option(None, "--index", "-i", help="Index folder written by `tdro-suite index`."),
    query: list[str] = typer.Option(None, "--query", "-q", help="A query (repeatable)."),
    queries: Path = typer.Option(None, "--queries", help="Queries file: .tsv (qid, query), .jsonl or .txt."),
    k: int = typer.Option(None, "-k", "--top-k", help="Results per query \\[10]."),
    model: str = typer.Option(None, "--model", "-m", help="Query model \\[the one recorded in the index]."),
    instruction: str = typer.Option(None, "--instruction", help="Task instruction for the query prompt."),
    output: Path = typer.Option(None, "--output", "-o", help="Write JSON lines here instead of a table."),
    batch_size: int = typer.Option(None, "--batch-size", help="Queries per forward pass \\[32]."),
    max_length: int = typer.Option(None, "--max-length", help="Tokens per query \\[the model's]."),
    device: str = typer.Option(None, "--device", help="cpu, cuda, ... \\[auto]."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML file with any of these options."),
) -> None:
    """Search an index: ranked document ids, scores and titles per query."""
    from tdro_suite.common.errors import ConfigError
    from tdro_suite.common.io import atomic_write_text
    from tdro_suite.index.dense_index import DenseIndex
    from tdro_suite.index.search import check_encoder, gather_queries, search_queries
    from tdro_suite.modeling import Encoder

    cfg = load_config(
        SearchConfig,
        config,
        {
            "index": str(index_dir) if index_dir else None,
            "query": query or None,
            "queries": str(queries) if queries else None,
            "k": k,
            "model": model,
            "instruction": instruction,
            "output": str(output) if output else None,
            "batch_size": batch_size,
            "max_length": max_length,
            "device": device,
        },
    )
    pairs = gather_queries(cfg.query, cfg.queries)
    dense = DenseIndex.load(cfg.index)
    model_name = cfg.model or dense.manifest.get("model")
    if not model_name:
        raise ConfigError(f"{cfg.index}: the manifest records no model; pass --model.")
    if cfg.model:
        dense.check_model(cfg.model)  # before loading a model that cannot be used anyway
    encoder = Encoder.from_pretrained(model_name, max_length=cfg.max_length, device=cfg.device)
    check_encoder(dense, encoder)
    results = search_queries(dense, encoder, pairs, k=cfg.k, instruction=cfg.instruction, batch_size=cfg.batch_size)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    if cfg.output:
        atomic_write_text(cfg.output, lines)
        console.print(f"Wrote {len(results)} rankings → {cfg.output}", highlight=False)
    elif as_json:
        typer.echo(lines, nl=False)
    else:
        for record in results:
            table = Table(title=f"{record['query_id']}: {record['query']}", title_justify="left")
            for column in ("rank", "id", "score", "title"):
                table.add_column(column, justify="right" if column in ("rank", "score") else "left")
            for hit in record["hits"]:
                table.add_row(str(hit["rank"]), hit["id"], f"{hit['score']:.4f}", hit["title"] or hit["text"][:60])
            console.print(table)


def register(app: typer.Typer) -> None:
    app.command("index")(index)
    app.command("search")(search)

"""CLI commands of the index stage: `index` (build a FAISS index folder) and `search`.

Options are generated from `IndexConfig` and `SearchConfig` (see `tdro_suite.cli_options`); the work is
in `tdro_suite.index.run`.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from tdro_suite.cli_options import JSON_OPTION, Opt, config_command
from tdro_suite.index.config import IndexConfig, SearchConfig

console = Console()


@config_command(IndexConfig)
def index(cfg: IndexConfig) -> None:
    """Encode a corpus (sharded, resumable; torchrun splits it across processes) and build a FAISS index."""
    from tdro_suite.index.run import run_index

    built = run_index(cfg)
    if built is not None:
        m = built.manifest
        console.print(
            f"Indexed {len(built)} documents with {cfg.model} ({m['dimension']}-d, {m['index_type']}: {m['factory']}) "
            f"→ {cfg.output}  [encode {m['encode_seconds']:.1f}s, build {m['build_seconds']:.1f}s]",
            highlight=False,
        )


@config_command(SearchConfig, options={"index": Opt(("-i",)), "query": Opt(("-q",)), "k": Opt(("-k", "--top-k"))})
def search(cfg: SearchConfig, as_json: bool = JSON_OPTION) -> None:
    """Search an index: ranked document ids, scores and titles per query."""
    from tdro_suite.common.io import atomic_write_text
    from tdro_suite.index.run import run_search

    results = run_search(cfg)
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

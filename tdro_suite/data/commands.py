"""`tdro-suite data validate|stats|mine`: check training sets, describe them, and mine their hard negatives."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from tdro_suite.cli_options import JSON_OPTION, Opt, config_command
from tdro_suite.data.mine import MineConfig

if TYPE_CHECKING:  # the data modules load in the command bodies, so `--help` reads no more than it needs
    from rich.table import Table

    from tdro_suite.data.mine import MiningReport
    from tdro_suite.data.stats import ValidationResult

PATHS_HELP = (
    "Task manifests (tasks.json), folders holding one, .jsonl/.jsonl.gz/.parquet files, save_to_disk folders, "
    "or hf:NAME[:SUBSET][@SPLIT] (a hub dataset or a local folder in its layout). "
    "Default: the bundled training mixture."
)


def _run(paths: list[str] | None, skip_invalid: bool, as_json: bool, manifest: str | None = None) -> ValidationResult:
    """Validate the tasks `paths` name (default: the bundled mixture) with a progress bar on stderr.

    With --json the report goes to stdout and the bar is hidden, so stdout stays machine-readable.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tdro_suite.data.stats import validate_tasks
    from tdro_suite.data.tasks import training_tasks

    tasks = training_tasks(paths or [], manifest)
    total = sum(t.size for t in tasks) or None
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=as_json,
        transient=True,
    ) as progress:
        bar = progress.add_task(f"reading {len(tasks)} task(s)", total=total)
        result = validate_tasks(tasks, skip_invalid=skip_invalid, on_example=lambda n: progress.advance(bar, n))
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    return result


def _print_skipped(console: Console, result: ValidationResult) -> None:
    for s in result.stats:
        if s.invalid.skipped:
            console.print(f"[yellow]{s.name}[/yellow]: {s.invalid.summary()}", highlight=False)
            for message in s.invalid.messages[:5]:
                console.print(f"    {message}", highlight=False, soft_wrap=True)


def _stdout_console() -> Console:
    """Wide enough for the table when stdout is a pipe or a file (rich would assume 80 columns)."""
    return Console(width=None if sys.stdout.isatty() else 160)


def _stats_table(result: ValidationResult) -> Table:
    from rich.table import Table

    table = Table(title="Training tasks", show_footer=True)
    table.add_column("task", footer=f"{len(result.stats)} tasks", no_wrap=True)
    table.add_column("languages", footer=f"{len(result.languages)} languages", no_wrap=True)
    table.add_column("sym")
    table.add_column("domain")
    table.add_column("examples", justify="right", footer=str(sum(s.examples for s in result.stats)))
    table.add_column("query chars", justify="right")
    table.add_column("passage chars", justify="right")
    table.add_column("neg/query", justify="right")
    table.add_column("skipped", justify="right", footer=str(sum(s.invalid.skipped for s in result.stats)))
    for s in result.stats:
        table.add_row(
            s.name,
            ",".join(s.languages) or "-",
            "yes" if s.symmetric else "no",
            s.domain or "-",
            str(s.examples),
            f"{s.mean_query_chars:.0f}",
            f"{s.mean_passage_chars:.0f}",
            f"{s.negatives_per_query:.1f}",
            str(s.invalid.skipped),
        )
    return table


def _mining_table(report: MiningReport) -> Table:
    from rich.table import Table

    d = report.to_dict()
    per_query = d["negatives_per_query"]
    table = Table(title=f"Mined hard negatives: {report.task} ({report.method})", show_header=False)
    for key, value in (
        ("queries", d["queries"]),
        ("passage pool", d["pool"]),
        ("ranks sampled", f"{report.ranks[0]}:{report.ranks[1]} of the top {report.depth}, seed {report.seed}"),
        ("negatives per query", f"mean {per_query['mean']:.2f}, min {per_query['min']} (k = {report.k})"),
        (f"queries with fewer than {report.k}", d["fewer_than_k"]),
        ("queries with none", d["zero"]),
        ("output", f"{report.output} ({d['seconds']:.1f}s)"),
    ):
        table.add_row(key, str(value))
    return table


@config_command(MineConfig, options={"data": Opt(argument=True), "out": Opt(("-o",))})
def mine(cfg: MineConfig, as_json: bool = JSON_OPTION) -> None:
    """Mine hard negatives: rank a passage pool per query (dense model + FAISS, or BM25), sample k from a rank
    window, skip positives and duplicate texts; writes Tevatron JSONL. Sharded under torchrun, resumable."""
    from tdro_suite.data.mine import run_mine

    report = run_mine(cfg, show_progress=not as_json)
    if report is None:  # another rank of a torchrun launch: rank 0 reports
        return
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        Console(stderr=True).print(_mining_table(report))


PATHS_ARGUMENT = typer.Argument(None, help=PATHS_HELP, show_default=False)
SKIP_INVALID = typer.Option(
    False, "--skip-invalid", help="Drop malformed lines instead of failing; they are counted and reported."
)
TASKS_MANIFEST = typer.Option(
    None,
    "--tasks",
    help="A task manifest describing the files of the given folder(s), e.g. configs/paper/tdro-tasks.json.",
    show_default=False,
)


def register(app: typer.Typer) -> None:
    """Add the `data` command group (validate, stats, mine) to the root app."""
    data_app = typer.Typer(
        help="Validate, describe and mine hard negatives for training sets (Tevatron JSONL + task manifest).",
        no_args_is_help=True,
    )

    @data_app.command("validate")
    def validate(
        paths: list[str] | None = PATHS_ARGUMENT,
        skip_invalid: bool = SKIP_INVALID,
        as_json: bool = JSON_OPTION,
        tasks: str | None = TASKS_MANIFEST,
    ) -> None:
        """Check every line of every task; fail on the first bad line with file:line:field."""
        from tdro_suite.data.stats import require_valid

        result = _run(paths, skip_invalid, as_json, tasks)
        console = _stdout_console()
        if not as_json:
            _print_skipped(console, result)
        require_valid(result)
        if not as_json:
            examples = sum(s.examples for s in result.stats)
            skipped = sum(s.invalid.skipped for s in result.stats)
            console.print(
                f"[green]OK[/green]: {len(result.stats)} tasks, {examples} examples, "
                f"{len(result.languages)} languages ({', '.join(result.languages) or 'unspecified'})"
                + (f"; {skipped} invalid lines skipped" if skipped else "; no invalid lines"),
                highlight=False,
            )

    @data_app.command("stats")
    def stats(
        paths: list[str] | None = PATHS_ARGUMENT,
        skip_invalid: bool = SKIP_INVALID,
        as_json: bool = JSON_OPTION,
        tasks: str | None = TASKS_MANIFEST,
    ) -> None:
        """Per task: examples, languages, mean query/passage length (characters), hard negatives per query."""
        result = _run(paths, skip_invalid, as_json, tasks)
        if as_json:
            return
        console = _stdout_console()
        console.print(_stats_table(result))
        _print_skipped(console, result)
        for problem in result.problems:
            console.print(f"[yellow]warning[/yellow]: {problem}", highlight=False, soft_wrap=True)

    data_app.command("mine")(mine)
    app.add_typer(data_app, name="data")

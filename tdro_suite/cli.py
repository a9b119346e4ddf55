"""The `tdro-suite` command line: a thin Typer shell over the library.

Each command loads its config and calls one library function. Stage commands live next to their
stage (`tdro_suite/<stage>/commands.py`) and are registered below; their options are generated
from the stage's config model (`tdro_suite.cli_options`), so a field added to a model is an option
at once. Importing this module (what `--help` does) imports no torch or faiss: those load inside the
command bodies. User errors (`TdroError`) print one paragraph, no traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from tdro_suite import __version__
from tdro_suite.common.errors import TdroError
from tdro_suite.data import commands as data_commands
from tdro_suite.dro import commands as dro_commands
from tdro_suite.evaluation import commands as eval_commands
from tdro_suite.index import commands as index_commands
from tdro_suite.modeling import commands as modeling_commands
from tdro_suite.pipeline import commands as pipeline_commands
from tdro_suite.serve import commands as serve_commands
from tdro_suite.train import commands as train_commands

app = typer.Typer(
    name="tdro-suite",
    help="Learn robust data mixtures with tDRO, fine-tune LLM dense retrievers, index, evaluate and serve them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tdro-suite {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """tdro-suite: from heterogeneous training sets to a served retriever."""


# --- command registration (one line per stage; keep the order of the pipeline) ---
modeling_commands.register(app)
data_commands.register(app)
dro_commands.register(app)
train_commands.register(app)
index_commands.register(app)
eval_commands.register(app)
serve_commands.register(app)
pipeline_commands.register(app)


def main() -> None:
    """Console-script entry point.

    Typer/click handle usage errors themselves (usage line, exit 2); user errors raised by the library
    (`TdroError`) print one paragraph and exit non-zero, without a traceback.
    """
    try:
        app()
    except TdroError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        sys.exit(130)


if __name__ == "__main__":
    main()

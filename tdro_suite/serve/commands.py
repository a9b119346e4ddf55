"""`tdro-suite serve`: run the embedding + search service under uvicorn.

Every `ServeSettings` field is an option (generated, see `tdro_suite.cli_options`), and the same name is a
YAML key and a `TDRO_*` variable; they merge as defaults < `--config` YAML < `TDRO_*` environment <
command-line options (`load_serve_settings`). The server itself is `tdro_suite.serve.server`.
"""

from __future__ import annotations

import typer

from tdro_suite.cli_options import config_command
from tdro_suite.serve.server import run_server
from tdro_suite.serve.settings import ServeSettings, load_serve_settings


@config_command(ServeSettings, loader=load_serve_settings)
def serve(settings: ServeSettings) -> None:
    """Serve OpenAI-compatible embeddings and dense search (dynamic batching, auth, metrics)."""
    run_server(settings)


def register(app: typer.Typer) -> None:
    """Add the `serve` command."""
    app.command("serve")(serve)

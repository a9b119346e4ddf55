"""`tdro-suite serve`: run the embedding + search service under uvicorn.

Settings merge as defaults < `--config` YAML < `TDRO_*` environment < command-line options, are
validated once here, and reach every uvicorn worker as JSON in the environment (the app factory
`tdro_suite.serve.app:create_app_from_env` reads them), so one worker or many behave the same.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tdro_suite.common.errors import ConfigError
from tdro_suite.serve.logging_setup import configure_logging
from tdro_suite.serve.settings import SETTINGS_ENV_VAR, ServeSettings, load_serve_settings

APP_FACTORY = "tdro_suite.serve.app:create_app_from_env"
WORKER_START_TIMEOUT_S = 180


def preflight(settings: ServeSettings) -> None:
    """Fail in the terminal, not in a background thread, for the mistakes a user makes most."""
    from tdro_suite.index.dense_index import MANIFEST_FILE
    from tdro_suite.index.errors import IndexFormatError
    from tdro_suite.modeling.resolve import resolve_model

    resolve_model(settings.model)
    index = settings.index
    if index is not None and index.exists() and not (index / MANIFEST_FILE).is_file():
        raise IndexFormatError(f"{index} exists but is not a tdro-suite index folder (no {MANIFEST_FILE}).")
    if index is not None and settings.workers > 1 and not index.exists():
        raise ConfigError(f"Index folder {index} does not exist; with --workers > 1 the index is read-only.")


def run_server(settings: ServeSettings) -> None:
    """Start uvicorn with the app factory; blocks until the server stops."""
    import uvicorn

    configure_logging(settings.log_level)
    preflight(settings)
    os.environ[SETTINGS_ENV_VAR] = settings.to_env_json()
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        server_header=False,
        # a worker imports torch and transformers before it can answer the supervisor's first ping
        timeout_worker_healthcheck=WORKER_START_TIMEOUT_S,
    )


def register(app: typer.Typer) -> None:
    """Add the `serve` command."""

    @app.command("serve")
    def serve(
        config: Path | None = typer.Option(None, "--config", help="YAML file of serve settings."),
        model: str | None = typer.Option(None, "--model", "-m", help="Model folder, alias (minilm) or hub id."),
        index: Path | None = typer.Option(None, "--index", help="Index folder for /v1/search and /v1/documents."),
        host: str | None = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1)."),
        port: int | None = typer.Option(None, "--port", help="Port (default 8000; 0 = any free port)."),
        workers: int | None = typer.Option(None, "--workers", help="uvicorn worker processes."),
        api_key_env: str | None = typer.Option(
            None, "--api-key-env", help="Environment variable holding the Bearer API key (the key never goes "
            "on a command line)."
        ),
        served_model_name: str | None = typer.Option(None, "--served-model-name", help="Name in /v1/models."),
        device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)."),
        dtype: str | None = typer.Option(None, "--dtype", help="float32, bfloat16, float16 (default: per device)."),
        max_length: int | None = typer.Option(None, "--max-length", help="Tokens per input (default: model's)."),
        max_batch_size: int | None = typer.Option(None, "--max-batch-size", help="Inputs per model call."),
        max_batch_tokens: int | None = typer.Option(None, "--max-batch-tokens", help="Padded tokens per call."),
        torch_threads: int | None = typer.Option(
            None, "--torch-threads", help="torch threads for the model (default: CPU cores - 1)."
        ),
        forward_batch_size: int | None = typer.Option(
            None, "--forward-batch-size", help="Most inputs per forward pass (passes group similar lengths)."
        ),
        max_queue_inputs: int | None = typer.Option(None, "--max-queue-inputs", help="Queue bound (then 429)."),
        truncate: bool | None = typer.Option(
            None, "--truncate/--no-truncate", help="Truncate over-long inputs, or answer 413."
        ),
        cors_origin: list[str] | None = typer.Option(None, "--cors-origin", help="Allowed CORS origin (repeat)."),
        log_level: str | None = typer.Option(None, "--log-level", help="debug, info, warning, error."),
        access_log: bool | None = typer.Option(None, "--access-log/--no-access-log", help="A log line per request."),
    ) -> None:
        """Serve OpenAI-compatible embeddings and dense search (dynamic batching, auth, metrics)."""
        overrides = {
            "model": model,
            "index": index,
            "host": host,
            "port": port,
            "workers": workers,
            "api_key_env": api_key_env,
            "served_model_name": served_model_name,
            "device": device,
            "dtype": dtype,
            "max_length": max_length,
            "max_batch_size": max_batch_size,
            "max_batch_tokens": max_batch_tokens,
            "max_queue_inputs": max_queue_inputs,
            "forward_batch_size": forward_batch_size,
            "torch_threads": torch_threads,
            "truncate": truncate,
            "cors_origins": cors_origin or None,
            "log_level": log_level,
            "access_log": access_log,
        }
        run_server(load_serve_settings(config, overrides))

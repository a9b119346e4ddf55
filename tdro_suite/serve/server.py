"""Start the service: check what users get wrong most, hand the validated settings to every worker, run uvicorn.

Settings reach every uvicorn worker as JSON in the environment (the app factory
`tdro_suite.serve.app:create_app_from_env` reads them), so one worker or many behave the same.
"""

from __future__ import annotations

import os

from tdro_suite.common.errors import ConfigError
from tdro_suite.serve.logging_setup import configure_logging
from tdro_suite.serve.settings import SETTINGS_ENV_VAR, ServeSettings

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

"""Start the service: check what users get wrong most, hand the validated settings to every worker, run uvicorn.

Settings reach every uvicorn worker as JSON in the environment (the app factory
`tdro_suite.serve.app:create_app_from_env` reads them), so one worker or many behave the same.

Start-up failures are fatal. A worker whose model or index cannot load (a missing model, an index built
with another model, a broken index folder) writes the reason to a file named in the environment and
sends SIGINT to the process that runs uvicorn (itself with one worker, the supervisor with
`--workers N`). uvicorn shuts every worker down gracefully, and `run_server` raises `ServeStartupError`
with the reason, so `tdro-suite serve` exits non-zero instead of answering 503 forever. (SIGINT, not
SIGTERM: a single uvicorn server re-raises the signal it stopped for once it is down, and Python turns
SIGINT into a KeyboardInterrupt that uvicorn.run absorbs, where SIGTERM would kill the process before
the reason is printed.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator

from tdro_suite.common.errors import ConfigError, TdroError
from tdro_suite.serve.logging_setup import configure_logging
from tdro_suite.serve.settings import SETTINGS_ENV_VAR, ServeSettings

APP_FACTORY = "tdro_suite.serve.app:create_app_from_env"
WORKER_START_TIMEOUT_S = 180
FATAL_FILE_ENV_VAR = "_TDRO_SERVE_FATAL_FILE"
SUPERVISOR_PID_ENV_VAR = "_TDRO_SERVE_SUPERVISOR_PID"
STARTUP_FAILURE_EXIT_CODE = 3  # uvicorn's own code for "the app could not start"


class ServeStartupError(TdroError):
    """The model, the index or the settings could not be loaded: the server stopped."""

    exit_code = STARTUP_FAILURE_EXIT_CODE


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


def report_fatal_startup(reason: str) -> None:
    """In a worker: record why start-up failed and stop the server, so `tdro-suite serve` exits non-zero.

    Without the channel `run_server` sets up (uvicorn started by hand, or no writable temporary folder)
    the worker exits at once with uvicorn's start-up failure code.
    """
    path, pid = os.environ.get(FATAL_FILE_ENV_VAR), os.environ.get(SUPERVISOR_PID_ENV_VAR)
    try:
        if not path or not pid:
            raise OSError("no start-up failure channel")
        with open(path, "a", encoding="utf-8") as out:
            out.write(" ".join(reason.split()) + "\n")
        os.kill(int(pid), signal.SIGINT)
    except (OSError, ValueError):
        os._exit(STARTUP_FAILURE_EXIT_CODE)


@contextlib.contextmanager
def _fatal_channel() -> Iterator[str | None]:
    """A temporary file the workers append start-up failures to (None when no temporary folder is writable)."""
    try:
        handle, path = tempfile.mkstemp(prefix="tdro-serve-", suffix=".startup")
    except OSError:
        yield None
        return
    os.close(handle)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _failures(path: str | None) -> str:
    if path is None:
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return "; ".join(dict.fromkeys(lines))  # every worker reports the same reason once


def run_server(settings: ServeSettings) -> None:
    """Start uvicorn with the app factory; blocks until the server stops.

    Raises ServeStartupError when a worker could not load the model or the index.
    """
    import uvicorn

    configure_logging(settings.log_level)
    preflight(settings)
    os.environ[SETTINGS_ENV_VAR] = settings.to_env_json()
    with _fatal_channel() as channel:
        if channel is not None:
            os.environ[FATAL_FILE_ENV_VAR] = channel
            os.environ[SUPERVISOR_PID_ENV_VAR] = str(os.getpid())
        try:
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
        except SystemExit:
            _raise_on_failure(channel)
            raise
        finally:
            for name in (FATAL_FILE_ENV_VAR, SUPERVISOR_PID_ENV_VAR):
                os.environ.pop(name, None)
        _raise_on_failure(channel)


def _raise_on_failure(channel: str | None) -> None:
    reason = _failures(channel)
    if reason:
        raise ServeStartupError(f"The server stopped because start-up failed: {reason}")

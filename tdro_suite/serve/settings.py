"""Service settings: defaults < YAML file < `TDRO_*` environment variables < command-line options.

One pydantic-settings model holds every knob of `tdro-suite serve`, so the same names work as a YAML key
(`max_batch_size: 64`), an environment variable (`TDRO_MAX_BATCH_SIZE=64`, what a container sets) and a
CLI option (`--max-batch-size 64`). Worker processes started by uvicorn receive the merged settings as
JSON in `SETTINGS_ENV_VAR`, so every worker sees exactly what the parent validated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tdro_suite.common.errors import ConfigError
from tdro_suite.config import format_validation_error, read_yaml
from tdro_suite.modeling.config import ATTN_HELP, DTYPE_HELP, AttnImplementation, InferenceDtype

SETTINGS_ENV_VAR = "_TDRO_SERVE_SETTINGS_JSON"

InputType = Literal["query", "passage", "none"]


class ServeSettings(BaseSettings):
    """Everything `tdro-suite serve` and `create_app` need; read from `TDRO_`-prefixed variables."""

    model_config = SettingsConfigDict(env_prefix="TDRO_", extra="forbid", protected_namespaces=())

    # What is served
    model: str = Field("minilm", description="Model folder, bundled alias (minilm, smollm2-135m) or hub id.")
    served_model_name: str | None = Field(None, description="Name reported by /v1/models; default: model.")
    index: Path | None = Field(None, description="Index folder for /v1/search and /v1/documents.")
    snapshot_log_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="Size of the index folder's change log (each document change is "
        "appended and fsync'ed before it is acknowledged) at which the whole folder is saved and the log emptied; "
        "larger: fewer full saves, longer replay at start (0: save after every change)."
    )
    device: str | None = Field(None, description="torch device (cpu, cuda, cuda:1); default: auto.")
    dtype: InferenceDtype = Field("auto", description=DTYPE_HELP)
    attn_implementation: AttnImplementation = Field("sdpa", description=ATTN_HELP)
    max_length: int | None = Field(None, ge=1, description="Token limit per input; default: the model's.")
    default_input_type: InputType = Field("none", description="Prompt used when a request names none.")
    matryoshka_dims: list[int] = Field(
        default_factory=list, description="Smaller `dimensions` the model was trained for (Matryoshka)."
    )

    # Where it listens
    host: str = Field("127.0.0.1", description="Address to bind (0.0.0.0: every interface).")
    port: int = Field(8000, ge=0, le=65535, description="Port (0: any free port).")
    workers: int = Field(1, ge=1, description="uvicorn worker processes (documents are read-only when > 1).")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="Log level.")
    access_log: bool = Field(True, description="uvicorn's line per request (off for benchmarks).")

    # Security
    api_key: SecretStr | None = Field(None, description="Bearer key required on /v1/*; none = open.")
    api_key_env: str | None = Field(None, description="Name of the environment variable holding the key.")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins; empty = off.")

    # Dynamic batching
    max_batch_size: int = Field(
        256, ge=1, description="Most inputs in one model call; a call splits its inputs into the cheapest set "
        "of padded forward passes (of at most forward_batch_size), so a larger call pads less."
    )
    max_batch_tokens: int = Field(32768, ge=1, description="Most padded tokens (inputs x longest) per call.")
    torch_threads: int | None = Field(
        None, ge=1, description="torch threads for the model in each worker, shared among its model_streams; "
        "default: the CPU cores this process may use, divided among the workers. The model does nearly all "
        "the work, so it gets every core even though the event loop and the tokenizer share them."
    )
    model_streams: int | None = Field(
        None, ge=1, description="Model calls that run at once in each worker, each in its own thread with an "
        "even share of torch_threads; default: 2 on a CPU with at least 2 threads (two calls on one core each "
        "beat one call on two: see eval/bench/README.md), 1 on a GPU."
    )
    forward_batch_size: int = Field(
        64, ge=1, description="Most inputs per forward pass; a model call splits its inputs into passes by "
        "length, weighing padding against the fixed cost of a pass (measured on the model at start)."
    )
    batch_wait_ms: float = Field(2.0, ge=0, description="How long a batch waits for company once started.")
    max_queue_inputs: int = Field(4096, ge=1, description="Inputs waiting before requests get 429.")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 429/503.")

    # Per-request limits
    max_inputs_per_request: int = Field(2048, ge=1, description="Most inputs in one request (then 413).")
    max_chars_per_input: int = Field(32768, ge=1, description="Most characters in one input (then 413).")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest request body (then 413).")
    max_top_k: int = Field(100, ge=1, description="Largest top_k a search may ask for.")
    truncate: bool = Field(True, description="Truncate inputs over the token limit (false: answer 413).")

    @model_validator(mode="after")
    def _check(self) -> ServeSettings:
        if self.max_inputs_per_request > self.max_queue_inputs:
            raise ValueError(
                f"max_inputs_per_request ({self.max_inputs_per_request}) must not exceed max_queue_inputs "
                f"({self.max_queue_inputs}): such a request could never be queued"
            )
        if self.api_key is not None and not self.api_key.get_secret_value():
            self.api_key = None  # TDRO_API_KEY="" (e.g. an unset compose variable) means no key, not ""
        if self.api_key_env and self.api_key is None:
            value = os.environ.get(self.api_key_env)
            if not value:
                raise ValueError(f"api_key_env names the environment variable {self.api_key_env}, which is unset")
            self.api_key = SecretStr(value)
        return self

    def model_threads(self) -> int:
        """`torch_threads`, or the usable cores (CPU affinity, as in a container) shared among the workers."""
        if self.torch_threads:
            return self.torch_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.workers)

    def streams(self, device_type: str) -> int:
        """`model_streams`, or 2 on a CPU with 2 or more model threads and 1 elsewhere (never more than threads)."""
        threads = self.model_threads()
        if self.model_streams:
            return min(self.model_streams, threads) if device_type == "cpu" else self.model_streams
        return 2 if device_type == "cpu" and threads >= 2 else 1

    @property
    def model_name(self) -> str:
        """The name clients use in `model` fields."""
        return self.served_model_name or self.model

    def to_env_json(self) -> str:
        """Serialise for worker processes (the key travels in the environment, never on a command line)."""
        data = self.model_dump(mode="json", exclude={"api_key", "api_key_env"})
        data["api_key"] = self.api_key.get_secret_value() if self.api_key else None
        return json.dumps(data)


def load_serve_settings(
    config: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> ServeSettings:
    """Merge defaults < YAML `config` < `TDRO_*` environment < `overrides` (None = not given)."""
    file_values = read_yaml(config) if config else {}
    from_env = ServeSettings.model_fields.keys() & {
        k[len("TDRO_") :].lower() for k in os.environ if k.upper().startswith("TDRO_")
    }
    merged = {k: v for k, v in file_values.items() if k not in from_env}
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    sources = ([f"config file {config}"] if config else []) + ["TDRO_* environment", "command-line options"]
    try:
        return ServeSettings(**merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, " and ".join(sources))) from None


def settings_from_environment() -> ServeSettings:
    """Settings inside a uvicorn worker: the parent's JSON if present, else `TDRO_*` variables."""
    raw = os.environ.get(SETTINGS_ENV_VAR)
    try:
        return ServeSettings(**json.loads(raw)) if raw else ServeSettings()
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "the TDRO_* environment")) from None

"""Command configs: a YAML file plus command-line overrides, validated by a pydantic model.

Every command has a pydantic model (kept next to the stage that uses it) derived from
`CommandConfig`, which forbids unknown keys. `load_config` merges, in order of precedence:
model defaults < YAML file < options given on the command line, and turns validation failures
into a `ConfigError` that names the file and the offending key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tdro_suite.common.errors import ConfigError

C = TypeVar("C", bound="CommandConfig")


class CommandConfig(BaseModel):
    """Base for every command's config: unknown keys are errors, values are re-validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    # Keys of older configs, {old: new}: an unknown-key error then names the new key.
    renamed_keys: ClassVar[dict[str, str]] = {}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping document is a `ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of keys to values, not {type(data).__name__}.")
    return data


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def format_validation_error(exc: ValidationError, source: str, renamed: Mapping[str, str] | None = None) -> str:
    """One sentence naming the source and every bad key; a key of an older config names its new name."""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            new = (renamed or {}).get(key)
            parts.append(f"unknown key '{key}'" + (f" (renamed to '{new}')" if new else ""))
        else:
            value = err.get("input")
            shown = "" if isinstance(value, dict) else f" (got {value!r})"
            parts.append(f"key '{key}': {err['msg']}{shown}")
    return f"Invalid configuration from {source}: " + "; ".join(parts) + "."


def load_config(
    model: type[C], path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> C:
    """Build `model` from an optional YAML file and CLI overrides (`None` values mean "not given")."""
    data: dict[str, Any] = read_yaml(path) if path else {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    sources = []
    if path:
        sources.append(f"config file {path}")
    if given:
        sources.append("command-line options " + ", ".join(f"--{k.replace('_', '-')}" for k in given))
    try:
        return model.model_validate(_merge(data, given))
    except ValidationError as exc:
        source = " and ".join(sources) or "defaults"
        raise ConfigError(format_validation_error(exc, source, model.renamed_keys)) from None

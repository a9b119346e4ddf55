"""Pooling: turn token states into one vector per text.

- `lasttoken` for decoder LLMs: the state of the final real token (we append EOS ourselves, so it
  is the EOS state). Works for left AND right padding by locating the last 1 in the attention mask.
- `mean` over real tokens, `cls` (first token) for encoders.
The mode is read from a sentence-transformers pooling config when present, else from the architecture.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

POOLING_MODES = ("lasttoken", "mean", "cls")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool `hidden` [B, T, H] under `attention_mask` [B, T] into [B, H]."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if mode == "lasttoken":
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        last = (attention_mask.long() * positions).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling mode {mode!r}; choose one of {POOLING_MODES}")


def pooling_from_sentence_transformers(folder: Path) -> str | None:
    """Read the pooling mode from a sentence-transformers folder (modules.json → Pooling config)."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    for module in json.loads(modules_file.read_text()):
        if module.get("type", "").endswith("Pooling"):
            cfg_file = folder / module.get("path", "") / "config.json"
            if not cfg_file.is_file():
                return None
            cfg = json.loads(cfg_file.read_text())
            if cfg.get("pooling_mode_lasttoken"):
                return "lasttoken"
            if cfg.get("pooling_mode_cls_token"):
                return "cls"
            if cfg.get("pooling_mode_mean_tokens"):
                return "mean"
    return None


def pooling_for_config(config) -> str:
    """Decoder-only LLMs (causal LM architectures) → lasttoken; everything else → mean."""
    if getattr(config, "is_decoder", False) or getattr(config, "is_encoder_decoder", False):
        return "lasttoken"
    archs = getattr(config, "architectures", None) or []
    if any("CausalLM" in a or "ForConditionalGeneration" in a for a in archs):
        return "lasttoken"
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", "")
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "lasttoken"
    return "mean"

"""LoRA through peft: pick target modules from the architecture, attach, merge."""

from __future__ import annotations

import torch

# Linear layers worth adapting, by family; the first family whose names exist in the model wins.
_TARGET_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),  # Llama, Qwen2, Mistral
    ("query", "key", "value", "dense"),  # BERT, RoBERTa, XLM-R
    ("c_attn", "c_proj", "c_fc"),  # GPT-2
    ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),  # GPT-NeoX, Falcon
)


def find_lora_targets(model: torch.nn.Module) -> list[str]:
    """Names (last path component) of linear layers to adapt, auto-detected from the model."""
    linear_names = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}
    for family in _TARGET_FAMILIES:
        present = [n for n in family if n in linear_names]
        if present:
            return present
    raise ValueError(
        "Could not find LoRA target modules for this architecture; pass target_modules explicitly "
        f"(linear layers present: {sorted(linear_names)[:20]})."
    )


def attach_lora(
    model: torch.nn.Module,
    rank: int = 16,
    alpha: int = 32,
    dropout: float = 0.1,
    target_modules: list[str] | None = None,
) -> torch.nn.Module:
    """Wrap `model` in a peft LoRA model; only the adapters are trainable afterwards."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules or find_lora_targets(model),
        bias="none",
    )
    return get_peft_model(model, config)


def is_peft(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)

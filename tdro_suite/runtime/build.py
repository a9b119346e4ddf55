"""The Encoder a stage trains (from a `ModelConfig`) and the frozen one it compares with."""

from __future__ import annotations

import torch

from tdro_suite.modeling.encoder import Encoder
from tdro_suite.runtime.config import ModelConfig


def build_trainable_encoder(cfg: ModelConfig, device: torch.device, bf16: bool) -> Encoder:
    """Load the backbone, add LoRA and gradient checkpointing as configured, in train mode.

    Fully trained weights stay fp32 (bf16 autocast does the compute); a frozen LoRA base may be bf16
    (peft keeps the adapters in fp32). No max_length here: training truncates per call, and the
    exported model keeps the base model's own maximum length.
    """
    encoder = Encoder.from_pretrained(
        cfg.model, pooling=cfg.pooling, device=device, dtype=torch.bfloat16 if bf16 and cfg.lora else torch.float32
    )
    if cfg.lora:
        encoder.add_lora(cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
    if cfg.gradient_checkpointing:
        encoder.enable_gradient_checkpointing()
    encoder.train()
    return encoder


def load_frozen_encoder(model: str, device: torch.device, bf16: bool) -> Encoder:
    """An Encoder that never trains: eval mode, no gradients, bf16 weights under bf16 (it only runs forwards)."""
    encoder = Encoder.from_pretrained(model, device=device, dtype=torch.bfloat16 if bf16 else torch.float32)
    encoder.eval()
    encoder.requires_grad_(False)
    return encoder

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
        cfg.model, pooling=cfg.pooling, device=device, dtype=torch.bfloat16 if bf16 and cfg.lora else torch.float32,
        attn_implementation=cfg.attn_implementation,
    )
    if cfg.lora:
        encoder.add_lora(cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
    encoder.freeze_unread_modules()  # every trainable parameter then gets a gradient: DDP needs no unused search
    if cfg.gradient_checkpointing:
        encoder.enable_gradient_checkpointing()
    encoder.train()
    return encoder


def load_frozen_encoder(model: str, device: torch.device, attn_implementation: str = "sdpa") -> Encoder:
    """An Encoder that never trains: eval mode, no gradients, fp32 weights, the proxy's attention kernel.

    Under bf16 its forward runs under the same bf16 autocast as the proxy's, as in the public tDRO code
    (its reference is loaded without a dtype next to the proxy): a tDRO measure compares the two models'
    losses, so both carry the same rounding. bf16 weights would add their own: at τ = 0.002 on 104 bundled
    examples (CPU autocast), per-example losses of bf16 weights and of fp32 weights under autocast differed
    by 0.30 on average (0.6% of the mean loss, max 1.7) for MiniLM and by 1.8 (8.5%, max 13) for
    SmolLM2-135M, moving a task's relative measure by up to 21% and 49%. The cost is memory: 4 bytes per
    reference parameter instead of 2 (Qwen1.5-0.5B: about 1.9 GB instead of 0.9 GB).
    """
    encoder = Encoder.from_pretrained(
        model, device=device, dtype=torch.float32, attn_implementation=attn_implementation
    )
    encoder.eval()
    encoder.requires_grad_(False)
    return encoder

"""bf16 or fp32: one rule for every stage that trains."""

from __future__ import annotations

from tdro_suite.common.errors import ConfigError


def use_bf16(precision: str, device_type: str) -> bool:
    """`auto` → bf16 on CUDA, fp32 elsewhere; `bf16` needs CUDA (CPU bf16 training is slow and inexact)."""
    if precision == "bf16" and device_type != "cuda":
        raise ConfigError("precision 'bf16' needs a CUDA GPU; on CPU use 'fp32' (or 'auto').")
    return precision == "bf16" or (precision == "auto" and device_type == "cuda")

"""Pick the torch device and dtype a command runs on, and say why.

Inference dtype: bf16 on CUDA GPUs that support it (fp16 on older ones); on CPUs, bf16 weights where
the CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16), fp32 elsewhere. On a 2-core AVX512-BF16
machine MiniLM encodes 1.7x faster with bf16 weights than fp32 (bf16 autocast over fp32 weights gains
only 1.1-1.5x: every linear layer casts its weights again), with a cosine >= 0.9999 to the fp32
embeddings and the bundled benchmarks' nDCG@10 unchanged (tests/test_inference_dtype.py). Without the
native instructions oneDNN emulates bf16 and it is slower than fp32. Training does not use this default:
it keeps fp32 weights under autocast (`tdro_suite.runtime.precision`).
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

import torch

DTYPE_NAMES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
               "fp16": torch.float16, "float16": torch.float16}
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_device(device: str | None = None) -> torch.device:
    """`None`/"auto" → cuda if available, else mps, else cpu; anything else is passed to torch."""
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


@cache
def cpu_bf16_flag() -> str | None:
    """The CPU feature that makes bf16 matmuls native here ("amx_bf16", "avx512_bf16"), or None.

    Asks torch's own CPU probe (cpuinfo, every OS it supports), else Linux's /proc/cpuinfo flags.
    """
    probe = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if probe is not None:
        try:
            capability = probe()
            return next((flag for flag in CPU_BF16_FLAGS if capability.get(flag)), None)
        except Exception:  # a private API: fall back to the OS's view
            pass
    cpuinfo = Path("/proc/cpuinfo")
    if platform.system() == "Linux" and cpuinfo.is_file():
        flags = set(cpuinfo.read_text(errors="replace").split())
        return next((flag for flag in CPU_BF16_FLAGS if flag in flags), None)
    return None


def choose_dtype(device: torch.device) -> tuple[torch.dtype, str]:
    """The inference dtype for `device` and the reason, as `tdro-suite env` prints it."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "CUDA GPU with bf16 support"
        return torch.float16, "CUDA GPU without bf16 support: fp16"
    if device.type == "cpu":
        flag = cpu_bf16_flag()
        if flag is not None:
            return torch.bfloat16, f"CPU has {flag}: native bf16 matmuls (about 1.7x fp32, cosine >= 0.999)"
        return torch.float32, "CPU without AVX512-BF16 or AMX-BF16: bf16 would be emulated and slower than fp32"
    return torch.float32, f"{device.type} device: fp32"


def parse_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """`--dtype` as given ("auto"/None = the device's default) → a torch dtype; a clear error otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "", "auto"):
        return choose_dtype(device)[0]
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto or one of {sorted(DTYPE_NAMES)}")
    return DTYPE_NAMES[dtype]

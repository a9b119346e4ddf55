"""What `tdro-suite env` reports: the versions and hardware that decide where and how fast tdro-suite runs."""

from __future__ import annotations

import importlib.metadata
import platform


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment_report() -> dict[str, object]:
    """Versions and hardware that decide where and how fast tdro-suite runs."""
    import faiss
    import torch

    from tdro_suite import __version__
    from tdro_suite.common.device import default_dtype, resolve_device

    cuda = torch.cuda.is_available()
    device = resolve_device(None)
    return {
        "tdro-suite": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch CUDA build": torch.version.cuda or "none (CPU build)",
        "CUDA available": cuda,
        "GPU count": torch.cuda.device_count() if cuda else 0,
        "GPUs": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "CPU threads": torch.get_num_threads(),
        "faiss": getattr(faiss, "__version__", _version("faiss-cpu")),
        "faiss GPUs": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
        "transformers": _version("transformers"),
        "sentence-transformers": _version("sentence-transformers"),
        "peft": _version("peft"),
        "accelerate": _version("accelerate"),
        "deepspeed": _version("deepspeed"),
        "default device": str(device),
        "default dtype": str(default_dtype(device)).replace("torch.", ""),
    }

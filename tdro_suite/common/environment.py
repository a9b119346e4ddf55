"""What `tdro-suite env` reports: the versions and hardware that decide where and how fast tdro-suite runs."""

from __future__ import annotations

import importlib.metadata
import platform


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def faiss_report(faiss: object) -> dict[str, object]:
    """Which FAISS build is installed (the pip distribution that provides `import faiss`) and whether it
    sees GPUs: faiss-cpu has none; faiss-gpu (the `gpu` extra) counts the CUDA devices it can use."""
    distributions = sorted(set(importlib.metadata.packages_distributions().get("faiss", [])))
    gpu_build = hasattr(faiss, "StandardGpuResources")
    count = faiss.get_num_gpus() if gpu_build and hasattr(faiss, "get_num_gpus") else 0  # type: ignore[attr-defined]
    version = getattr(faiss, "__version__", "unknown")
    return {
        "faiss": f"{version} ({', '.join(distributions) or 'unknown package'})",
        "faiss GPU support": "yes (GPU build)" if gpu_build else "no (CPU-only build; GPU build: the gpu extra)",
        "faiss GPUs": count,
    }


def environment_report() -> dict[str, object]:
    """Versions and hardware that decide where and how fast tdro-suite runs."""
    import faiss
    import torch

    from tdro_suite import __version__
    from tdro_suite.common.device import choose_dtype, resolve_device

    cuda = torch.cuda.is_available()
    device = resolve_device(None)
    dtype, why = choose_dtype(device)
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
        **faiss_report(faiss),
        "transformers": _version("transformers"),
        "sentence-transformers": _version("sentence-transformers"),
        "peft": _version("peft"),
        "accelerate": _version("accelerate"),
        "deepspeed": _version("deepspeed"),
        "default device": str(device),
        "CPU capability": torch.backends.cpu.get_cpu_capability(),
        "default dtype": f"{str(dtype).replace('torch.', '')} ({why}; --dtype overrides)",
    }

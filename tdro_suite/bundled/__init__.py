"""The bundled offline data: a multi-task training mixture and small BEIR / MIRACL / MKQA-layout benchmarks.

Built by `eval/data/build_offline.py` from installable public-domain / permissive sources (see
eval/data/DATASHEET.md) and shipped inside the package so the demo runs without any download.
"""

from __future__ import annotations

from pathlib import Path

from tdro_suite.common.errors import DataError

ROOT = Path(__file__).resolve().parent
BENCHMARK_KINDS = ("beir", "miracl", "mkqa")


def train_dir() -> Path:
    """Folder with the training tasks (`<task>.jsonl.gz`) and their manifest `tasks.json`."""
    path = ROOT / "train"
    if not (path / "tasks.json").is_file():
        raise DataError(
            f"The bundled training mixture is missing at {path}; rebuild it with eval/data/build_offline.py."
        )
    return path


def benchmark_dir(kind: str, name: str | None = None) -> Path:
    """`beir/<name>`, `miracl[/<lang>]` or `mkqa` under the bundled benchmarks; no name: the kind's folder."""
    if kind not in BENCHMARK_KINDS:
        raise DataError(f"Unknown benchmark kind '{kind}'; bundled kinds: {', '.join(BENCHMARK_KINDS)}.")
    path = ROOT / "benchmarks" / kind
    if name is not None:
        path = path / name
    if not path.is_dir():
        available = sorted(p.name for p in path.parent.iterdir() if p.is_dir()) if path.parent.is_dir() else []
        raise DataError(
            f"No bundled benchmark at {path}" + (f"; available: {', '.join(available)}." if available else ".")
        )
    return path

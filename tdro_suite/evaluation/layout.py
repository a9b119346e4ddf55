"""File names of the official benchmark layouts, shared by the loaders (`benchmarks`) and the BEIR
downloader (`download`), which therefore need not import each other."""

from __future__ import annotations

from pathlib import Path


def first_file(folder: Path, *names: str) -> Path | None:
    """The first of `names` present in `folder`, as is or gzipped (`<name>.gz`)."""
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def is_beir_dataset(folder: Path) -> bool:
    """A BEIR dataset folder: corpus.jsonl[.gz] beside a qrels/ folder."""
    return first_file(folder, "corpus.jsonl") is not None and (folder / "qrels").is_dir()

"""Where tdro-suite keeps caches (converted models, corpus embeddings)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """`$TDRO_CACHE_DIR` or `~/.cache/tdro-suite`, joined with `parts` and created."""
    root = os.environ.get("TDRO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tdro-suite"
    )
    path = Path(root).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path

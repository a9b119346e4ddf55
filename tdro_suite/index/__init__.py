"""Corpus encoding (sharded, resumable), FAISS index build/search/save/load, and the index/search commands.

`DenseIndex` loads on first use, so reading `tdro_suite.index.config` (as `--help` does) imports no faiss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tdro_suite.common.lazy import lazy_exports

if TYPE_CHECKING:
    from tdro_suite.index.dense_index import DenseIndex

__all__ = ["DenseIndex"]
__getattr__ = lazy_exports(__name__, {"DenseIndex": "tdro_suite.index.dense_index"})

"""Corpus encoding (sharded, resumable), FAISS index build/search/save/load, and the index/search commands."""

from tdro_suite.index.dense_index import DenseIndex

__all__ = ["DenseIndex"]

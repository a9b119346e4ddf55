"""tdro-suite: tDRO data mixtures, LLM dense-retriever fine-tuning, FAISS indexing, evaluation, serving."""

__version__ = "0.1.0"

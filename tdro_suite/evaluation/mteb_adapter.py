"""Let MTEB (2.x) evaluate a tdro-suite model, and run MTEB on our local collections.

- `MtebEncoder` implements MTEB's encoder protocol (`mteb.models.abs_encoder.AbsEncoder`): queries go through
  `Encoder.encode_queries` (instruction prompt), documents through `Encoder.encode_passages`,
  anything else (STS, classification) through plain `Encoder.encode`.
- `DenseIndexBackend` implements MTEB's search-backend protocol
  (`IndexEncoderSearchProtocol`) over our `DenseIndex`, so any of our index types serves MTEB's
  retrieval; `search_model(encoder)` plugs it into MTEB's own `SearchEncoderWrapper`, giving an
  object that satisfies MTEB's `SearchProtocol`.
- `local_retrieval_task(collection)` wraps a BEIR / MIRACL collection read by our loaders as an
  `AbsTaskRetrieval`, so `mteb.evaluate` runs offline on it (no hub download).

mteb is an optional dependency (the `dev` extra); importing this module without it fails with a hint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tdro_suite.common.errors import ConfigError
from tdro_suite.evaluation.benchmarks import Collection
from tdro_suite.index.dense_index import DenseIndex

if TYPE_CHECKING:
    from tdro_suite.modeling.protocol import EmbeddingModel

try:
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.models import ModelMeta
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ScoringFunction
    from mteb.models.search_wrappers import SearchEncoderWrapper
    from mteb.types import PromptType
except ImportError as exc:  # pragma: no cover - exercised only without mteb installed
    raise ConfigError(f"The MTEB adapter needs mteb>=2.0: pip install 'mteb>=2.0' ({exc}).") from None


def _model_meta(encoder: EmbeddingModel, name: str | None) -> ModelMeta:
    label = name or str(encoder.name or "model")
    if "/" not in label:  # MTEB wants "organization/model"
        label = f"tdro-suite/{label.strip('/').replace('/', '-') or 'model'}"
    return ModelMeta.create_empty(
        overwrites={
            "name": label[-200:],
            "embed_dim": int(encoder.dimension),
            "max_tokens": int(encoder.max_length),
            "similarity_fn_name": ScoringFunction.COSINE,  # create_empty does not coerce strings
            "framework": ["PyTorch"],
            "use_instructions": True,
            "open_weights": True,
        }
    )


class MtebEncoder(AbsEncoder):
    """A tdro-suite `Encoder` seen through MTEB's encoder protocol.

    `instruction` (if given) is the query instruction for every task; with
    `use_task_instructions=True` MTEB's per-task instruction is used instead; otherwise queries
    get the model's own default query prompt, exactly as `tdro-suite eval` does.
    """

    def __init__(
        self,
        encoder: EmbeddingModel,
        *,
        instruction: str | None = None,
        use_task_instructions: bool = False,
        name: str | None = None,
    ) -> None:
        self.model = encoder
        self.instruction = instruction
        self.use_task_instructions = use_task_instructions
        self.mteb_model_meta = _model_meta(encoder, name)

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        options = {
            "batch_size": int(kwargs.get("batch_size") or 32),
            "show_progress": bool(kwargs.get("show_progress_bar", False)),
        }
        if prompt_type == PromptType.query:
            instruction = self.instruction
            if instruction is None and self.use_task_instructions:
                instruction = self.get_task_instruction(task_metadata, prompt_type) or None
            return self.model.encode_queries(texts, instruction=instruction, **options)
        if prompt_type == PromptType.document:
            return self.model.encode_passages(texts, **options)
        return self.model.encode(texts, **options)


class DenseIndexBackend:
    """MTEB's `IndexEncoderSearchProtocol` over a tdro-suite `DenseIndex` (any index type)."""

    def __init__(self, index_type: str = "flat") -> None:
        self.index_type = index_type
        self.clear()

    def clear(self) -> None:
        self._ids: list[str] = []
        self._vectors: list[np.ndarray] = []
        self._index: DenseIndex | None = None

    def add_documents(self, embeddings: Any, idxs: list[str]) -> None:
        self._vectors.append(_numpy(embeddings))
        self._ids.extend(str(i) for i in idxs)
        self._index = None

    def _built(self) -> DenseIndex:
        if self._index is None:
            if not self._ids:
                raise ValueError("No documents added; call add_documents() first.")
            self._index = DenseIndex.build(np.concatenate(self._vectors), self._ids, index_type=self.index_type)
        return self._index

    def search(
        self,
        embeddings: Any,
        top_k: int,
        similarity_fn: Any,
        top_ranked: dict[str, list[str]] | None = None,
        query_idx_to_id: dict[int, str] | None = None,
    ) -> tuple[list[list[float]], list[list[int]]]:
        """Top-k rows (positions in the added corpus) and scores; or rerank `top_ranked` candidates."""
        queries = _numpy(embeddings)
        position = {doc_id: i for i, doc_id in enumerate(self._ids)}
        if top_ranked is not None:
            if query_idx_to_id is None:
                raise ValueError("query_idx_to_id is required when reranking.")
            corpus = np.concatenate(self._vectors)
            all_scores, all_rows = [], []
            for qi, query in enumerate(queries):
                rows = [position[d] for d in top_ranked.get(query_idx_to_id[qi], []) if d in position]
                scores = corpus[rows] @ query if rows else np.zeros(0, dtype=np.float32)
                order = np.argsort(-scores, kind="stable")[:top_k]
                all_scores.append([float(scores[j]) for j in order])
                all_rows.append([rows[j] for j in order])
            return all_scores, all_rows
        scores, found = self._built().search(queries, top_k)
        rows = [[position[d] for d in row] for row in found]
        return [list(map(float, scores[i][: len(row)])) for i, row in enumerate(rows)], rows


def search_model(
    encoder: EmbeddingModel, *, index_type: str = "flat", instruction: str | None = None, name: str | None = None
) -> SearchEncoderWrapper:
    """An MTEB `SearchProtocol` model: MTEB's search wrapper over our encoder and our FAISS index."""
    return SearchEncoderWrapper(
        MtebEncoder(encoder, instruction=instruction, name=name), index_backend=DenseIndexBackend(index_type)
    )


def local_retrieval_task(collection: Collection, *, split: str = "test", name: str | None = None) -> AbsTaskRetrieval:
    """An MTEB retrieval task over a collection read by our loaders (qrels-judged only), loaded offline."""
    from datasets import Dataset

    if collection.answers is not None:
        raise ConfigError(f"{collection.name}: MKQA collections are judged by answers, which MTEB cannot score.")
    task_name = name or f"TdroLocal-{collection.name}"
    metadata = TaskMetadata(
        name=task_name,
        type="Retrieval",
        description=f"Local collection {collection.name} read by tdro-suite from {collection.source}.",
        reference=None,
        dataset={"path": "local/" + collection.name, "revision": "local"},
        category="t2t",
        modalities=["text"],
        eval_splits=[split],
        eval_langs=["eng-Latn"],
        main_score="ndcg_at_10",
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation=None,
    )
    split_data = RetrievalSplitData(
        corpus=Dataset.from_list([doc.to_dict() for doc in collection.corpus]),
        queries=Dataset.from_list([{"id": qid, "text": text} for qid, text in collection.queries.items()]),
        relevant_docs={qid: dict(judged) for qid, judged in collection.qrels.items()},
        top_ranked=None,
    )

    class LocalRetrievalTask(AbsTaskRetrieval):
        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            self.dataset = {"default": {split: split_data}}
            self.data_loaded = True

    LocalRetrievalTask.metadata = metadata
    LocalRetrievalTask.__name__ = task_name.replace("-", "_")
    return LocalRetrievalTask()


def _numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(array, dtype=np.float32))

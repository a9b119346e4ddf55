"""`tdro-suite data mine`: give a task hard negatives that a retriever ranks high but that are not positives.

Why this shape: the public tDRO reference mined its training sets with a dense retriever (BGE-base) over a
FAISS flat inner-product index, took the top 100 per query and sampled 16 negatives from ranks 2..99 of the
passages not labelled positive, from a pool of every distinct passage of the task. The best ranks are skipped
because unlabelled positives gather there. The same recipe runs here with any tdro-suite model, or with BM25
(`negatives.BM25Index`) where no model fits the language.

How it splits and resumes: the pool is encoded with `index.encode.encode_corpus` (resumable shards, split
across torchrun ranks); the queries are cut into fixed-size parts, part i is ranked and sampled by rank
i % W and saved as `part-NNNNN.npy` (the pool indices it chose), and after a barrier rank 0 writes the
output from the parts in input order. A part on disk is never redone; a work folder of other settings is
cleared. Parts have the same size for any W and each query's sample draws from its own RNG seeded with
(seed, line), so one process and several write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt, ValidationInfo, field_validator

from tdro_suite.common.errors import ConfigError, DataError
from tdro_suite.config import CommandConfig
from tdro_suite.data.text import normalize_text
from tdro_suite.data.types import Passage, TaskInfo, TrainExample
from tdro_suite.modeling.config import ATTN_HELP, DTYPE_HELP, AttnImplementation, InferenceDtype

if TYPE_CHECKING:
    from tdro_suite.index.encode import DistInfo
    from tdro_suite.modeling.encoder import Encoder

log = logging.getLogger(__name__)


class DenseModelConfig(CommandConfig):
    """The dense retriever (`--method dense`): the model and how it encodes, as `tdro-suite index` loads it."""

    model: str = "minilm"
    instruction: str | None = Field(
        None,
        description="Query instruction; default: the task's (from its manifest) for a model that reads "
        "instructions (tdro_instructions.json), none for other models.",
    )
    batch_size: PositiveInt = 32
    max_length: PositiveInt | None = None
    device: str | None = Field(None, description="torch device (cpu, cuda, cuda:1, ...); default: auto, "
                               "cuda:LOCAL_RANK under torchrun.")
    dtype: InferenceDtype = Field("auto", description=DTYPE_HELP)
    attn_implementation: AttnImplementation = Field("sdpa", description=ATTN_HELP)


class MineConfig(DenseModelConfig):
    """Mine hard negatives for one task; defaults follow the public tDRO reference's mining script."""

    data: list[str] = Field(
        default_factory=list,
        description="The task: a .jsonl/.jsonl.gz file, or a manifest or folder (then --task-name picks one "
        "task when it holds several). Default: the bundled mixture.",
    )
    tasks: str | None = Field(None, description="A task manifest describing the files of the given folder.")
    task_name: str | None = Field(None, description="The task to mine when the input holds several.")
    out: str = Field(description="Output file (.jsonl or .jsonl.gz, Tevatron format).")
    corpus: str | None = Field(
        None, description="Passage pool: a BEIR-style corpus.jsonl[.gz]; default: every distinct passage of the task."
    )
    method: Literal["dense", "bm25"] = Field("dense", description="Retriever that ranks the pool.")
    negatives: PositiveInt = Field(16, description="Negatives sampled per query (k).")
    depth: PositiveInt = Field(100, description="Passages retrieved per query (at least B of --ranks).")
    ranks: str = Field(
        "2:100", description="Sample from ranks A:B of the ranking, 0-based and B excluded (2:100 skips the best two)."
    )
    seed: NonNegativeInt = Field(42, description="Seed of the sampling (each query draws with (seed, its line)).")
    keep_existing: bool = Field(
        False, description="Keep the task's negatives and append the mined ones (default: replace them)."
    )
    shard_size: PositiveInt = Field(8192, description="Passages per encoded shard and queries per part (resume units).")
    work_dir: str | None = Field(
        None, description="Folder for shards and parts; default: .OUT.mining beside the output."
    )
    keep_work: bool = Field(False, description="Keep the work folder after the output is written.")

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("ranks")
    @classmethod
    def _rank_window(cls, value: str, info: ValidationInfo) -> str:
        """A:B, 0 <= A < B <= depth, holding at least k passages (checked against the fields before it)."""
        start, sep, stop = value.partition(":")
        if not sep or not start.strip().isdigit() or not stop.strip().isdigit():
            raise ValueError("expected A:B with whole numbers, e.g. 2:100")
        a, b = int(start), int(stop)
        depth, k = info.data.get("depth"), info.data.get("negatives")
        if a >= b:
            raise ValueError(f"{value}: A must be below B")
        if depth is not None and b > depth:
            raise ValueError(f"{value} reaches past --depth {depth}; raise --depth to at least {b}")
        if k is not None and k > b - a:
            raise ValueError(f"{value} holds {b - a} ranks, fewer than the {k} negatives asked")
        return f"{a}:{b}"

    @property
    def window(self) -> tuple[int, int]:
        start, _, stop = self.ranks.partition(":")
        return int(start), int(stop)


@dataclass
class MiningReport:
    """What the run produced: how many negatives each query got, and how many came short of k."""

    task: str
    method: str
    output: str
    pool: int
    k: int
    ranks: tuple[int, int]
    depth: int
    seed: int
    counts: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def fewer_than_k(self) -> int:
        return sum(1 for c in self.counts if c < self.k)

    @property
    def zero(self) -> int:
        return sum(1 for c in self.counts if c == 0)

    def to_dict(self) -> dict[str, Any]:
        counts = self.counts or [0]
        return {
            "task": self.task,
            "method": self.method,
            "output": self.output,
            "pool": self.pool,
            "queries": len(self.counts),
            "negatives": self.k,
            "ranks": list(self.ranks),
            "depth": self.depth,
            "seed": self.seed,
            "negatives_per_query": {
                "mean": round(sum(counts) / len(counts), 4),
                "min": min(counts),
                "max": max(counts),
            },
            "fewer_than_k": self.fewer_than_k,
            "zero": self.zero,
            "seconds": round(self.seconds, 3),
        }


def pick_task(tasks: Sequence[TaskInfo], name: str | None) -> TaskInfo:
    """The one task to mine: the only one given, or the one called `name`."""
    names = ", ".join(t.name for t in tasks)
    if name is None:
        if len(tasks) == 1:
            return tasks[0]
        raise ConfigError(f"The input holds {len(tasks)} tasks ({names}); pick one with --task-name.")
    for task in tasks:
        if task.name == name:
            return task
    raise ConfigError(f"No task named '{name}' in the input; it holds: {names}.")


def task_pool(examples: Sequence[TrainExample]) -> list[Passage]:
    """Every distinct positive and negative passage of the task, in order of first appearance.

    Distinct by docid and by exact title + text (the reference's key): a passage repeating either is left
    out, so one docid names one passage in the output and no text is ranked twice.
    """
    pool: list[Passage] = []
    ids: set[str] = set()
    texts: set[tuple[str, str]] = set()
    clashes = 0
    for example in examples:
        for passage in (*example.positives, *example.negatives):
            key = (passage.title, passage.text)
            if passage.docid in ids or key in texts:
                clashes += passage.docid in ids and key not in texts
                continue
            ids.add(passage.docid)
            texts.add(key)
            pool.append(passage)
    if clashes:
        log.warning("%d passages reuse a docid of another text; the first text of each docid is in the pool.", clashes)
    return pool


class PoolTexts:
    """Normalised pool texts, computed on first use: a rank reads only the passages its queries retrieve."""

    def __init__(self, pool: Sequence[Passage]) -> None:
        self._pool = pool
        self._norm: list[str | None] = [None] * len(pool)

    def __call__(self, j: int) -> str:
        text = self._norm[j]
        if text is None:
            text = self._norm[j] = normalize_text(self._pool[j].full_text())
        return text


def pick_negatives(
    ranked: Sequence[int],
    window: tuple[int, int],
    k: int,
    excluded_ids: set[str],
    excluded_texts: set[str],
    pool: Sequence[Passage],
    norm: Callable[[int], str],
    rng: Callable[[], np.random.Generator],
) -> list[int]:
    """Up to k pool indices from ranks [start, stop) of `ranked` (-1 = no passage), in rank order.

    A passage is skipped when its docid or normalised text is excluded (the positives, kept negatives) or its
    normalised text was already taken at a better rank; k of the rest are drawn without replacement with
    `rng()` (called only when there are more than k), so a query short of passages keeps them all.
    """
    seen = set(excluded_texts)
    candidates: list[int] = []
    for j in ranked[window[0] : window[1]]:
        if j < 0 or pool[j].docid in excluded_ids:
            continue
        text = norm(j)
        if text not in seen:
            seen.add(text)
            candidates.append(j)
    if len(candidates) <= k:
        return candidates
    keep = np.sort(rng().choice(len(candidates), size=k, replace=False))
    return [candidates[i] for i in keep]


def _exclusions(example: TrainExample, keep_existing: bool) -> tuple[set[str], set[str]]:
    passages = example.positives + (example.negatives if keep_existing else ())
    return {p.docid for p in passages}, {normalize_text(p.full_text()) for p in passages}


class DenseRanker:
    """Queries → top-depth pool indices by inner product of the encoder's embeddings (FAISS flat, exact)."""

    def __init__(self, encoder: Encoder, vectors: np.ndarray, depth: int, instruction: str | None, batch_size: int):
        from tdro_suite.index.factory import create_index, resolve_spec

        self._encoder, self._instruction, self._batch_size = encoder, instruction, batch_size
        self._depth = min(depth, len(vectors))
        self._index = create_index(resolve_spec("flat", len(vectors), vectors.shape[1]), vectors.shape[1])
        self._index.add(vectors)

    def __call__(self, queries: Sequence[str]) -> np.ndarray:
        vectors = self._encoder.encode_queries(
            list(queries), instruction=self._instruction, batch_size=self._batch_size, show_progress=False
        )
        return self._index.search(np.ascontiguousarray(vectors, dtype=np.float32), self._depth)[1]


class BM25Ranker:
    """Queries → top-depth pool indices by BM25; passages sharing no term with the query (score 0) are dropped."""

    def __init__(self, pool: Sequence[Passage], depth: int) -> None:
        from tdro_suite.data.negatives import BM25Index

        self._index, self._depth = BM25Index(pool), depth

    def __call__(self, queries: Sequence[str]) -> np.ndarray:
        docs, scores = self._index.search(queries, self._depth)
        return np.where(scores > 0, docs, -1)


class _PromptedPassages:
    """The encoder with a fixed passage prefix: a model trained with instructions reads a symmetric task's
    passages with the query prompt, as training gave them (`prompts.passage_prompt`)."""

    def __init__(self, encoder: Encoder, prompt: str) -> None:
        self._encoder, self._prompt = encoder, prompt

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode_passages(self, texts: Sequence[str], **kw: Any) -> np.ndarray:
        return self._encoder.encode(texts, prompt=self._prompt, **kw)


def _dense_ranker(
    cfg: MineConfig, task: TaskInfo, pool: Sequence[Passage], work: Path, info: DistInfo, device: str | None,
    show_progress: bool,
) -> tuple[DenseRanker, dict[str, Any]]:
    """Load the model, encode the pool into resumable shards (split across ranks), index it."""
    from tdro_suite.index.encode import encode_corpus, encoder_fingerprint
    from tdro_suite.modeling import Encoder

    encoder = Encoder.from_pretrained(
        cfg.model, max_length=cfg.max_length, device=device, dtype=cfg.dtype,
        attn_implementation=cfg.attn_implementation,
    )
    fmt = encoder.instructions  # None: a model trained without instructions, which gets none (as in `eval`)
    instruction = cfg.instruction
    if instruction is None and fmt is not None:
        instruction = task.instruction or None
    passage_prompt = ""
    if fmt is not None and instruction and task.symmetric and fmt.passages == "symmetric":
        passage_prompt = encoder.query_prompt_for(instruction)
    model = encoder_fingerprint(encoder)
    fingerprint = f"{model}-{_digest(passage_prompt)}" if passage_prompt else model
    vectors = encode_corpus(
        _PromptedPassages(encoder, passage_prompt) if passage_prompt else encoder, pool, work / "pool",
        batch_size=cfg.batch_size, shard_size=cfg.shard_size, info=info, show_progress=show_progress,
        fingerprint=fingerprint,
    )
    identity = {"model": fingerprint, "instruction": instruction, "query_prompt": encoder.prompts.get("query")}
    return DenseRanker(encoder, vectors, cfg.depth, instruction, cfg.batch_size), identity


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, default=str).encode()).hexdigest()[:20]


def _examples_digest(examples: Sequence[TrainExample], with_negatives: bool) -> str:
    """What a part's choice depends on in the task: queries, positives, and kept negatives."""
    digest = hashlib.sha256()
    for e in examples:
        passages = e.positives + (e.negatives if with_negatives else ())
        record = [e.query_id, e.query, [[p.docid, p.title, p.text] for p in passages]]
        digest.update(json.dumps(record, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()[:20]


def _part_path(folder: Path, i: int) -> Path:
    return folder / f"part-{i:05d}.npy"


def _mine_parts(
    cfg: MineConfig, examples: Sequence[TrainExample], pool: Sequence[Passage],
    ranker: Callable[[Sequence[str]], np.ndarray], folder: Path, info: DistInfo, show_progress: bool,
) -> None:
    """Rank and sample this rank's missing parts; each is saved atomically as a [queries, k] array (-1 = none)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tdro_suite.common.io import atomic_path
    from tdro_suite.index.encode import shard_ranges

    ranges = shard_ranges(len(examples), cfg.shard_size)
    own = [i for i in range(len(ranges)) if i % info.world_size == info.rank]
    todo = [i for i in own if not _part_path(folder, i).is_file()]
    norm = PoolTexts(pool)
    label = "mining" if info.world_size == 1 else f"mining (rank {info.rank})"
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(), console=Console(stderr=True), disable=not show_progress,
    ) as progress:
        bar = progress.add_task(
            label, total=sum(b - a for a, b in (ranges[i] for i in own)),
            completed=sum(b - a for a, b in (ranges[i] for i in own if i not in todo)), rate="",
        )
        started, done = time.perf_counter(), 0
        for i in todo:
            start, stop = ranges[i]
            part = examples[start:stop]
            ranked = ranker([e.query for e in part])
            chosen = np.full((len(part), cfg.negatives), -1, dtype=np.int64)
            for row, example in enumerate(part):
                ids, texts = _exclusions(example, cfg.keep_existing)
                picked = pick_negatives(
                    ranked[row].tolist(), cfg.window, cfg.negatives, ids, texts, pool, norm,
                    lambda line=start + row: np.random.default_rng((cfg.seed, line)),
                )
                chosen[row, : len(picked)] = picked
            with atomic_path(_part_path(folder, i)) as tmp, open(tmp, "wb") as fh:
                np.save(fh, chosen)
            done += len(part)
            rate = done / max(time.perf_counter() - started, 1e-9)
            progress.update(bar, advance=len(part), rate=f"{rate:.1f} queries/s")


def _load_parts(folder: Path, n: int, shard_size: int, k: int) -> np.ndarray:
    from tdro_suite.index.encode import shard_ranges

    parts = []
    for i, (start, stop) in enumerate(shard_ranges(n, shard_size)):
        path = _part_path(folder, i)
        if not path.is_file():
            raise DataError(f"{path}: part missing (was a process interrupted? rerun to resume).")
        part = np.load(path)
        if part.shape != (stop - start, k):
            raise DataError(f"{path}: shape {part.shape}, expected {(stop - start, k)}; remove it and rerun.")
        parts.append(part)
    return np.concatenate(parts) if parts else np.zeros((0, k), dtype=np.int64)


def run_mine(cfg: MineConfig, *, show_progress: bool = True) -> MiningReport | None:
    """Mine `cfg`'s task into `cfg.out`; the report on rank 0, None on the other ranks of a torchrun launch."""
    from tdro_suite.data.tasks import load_task_examples, training_tasks
    from tdro_suite.data.writer import write_examples
    from tdro_suite.index.corpus import corpus_hash
    from tdro_suite.index.corpus_store import open_corpus
    from tdro_suite.index.encode import DistInfo, barrier, prepare_work_dir
    from tdro_suite.runtime.accelerator import process_group

    started = time.perf_counter()
    task = pick_task(training_tasks(cfg.data, cfg.tasks), cfg.task_name)
    examples = load_task_examples(task)
    if not examples:
        raise DataError(f"{task.path}: the task holds no examples.")
    pool = open_corpus(cfg.corpus, progress=show_progress) if cfg.corpus else task_pool(examples)  # mapped, not in RAM
    start = cfg.window[0]
    if len(pool) < start + cfg.negatives:
        raise DataError(
            f"The passage pool ({cfg.corpus or 'the task'}: {len(pool)} passages) is too small for {cfg.negatives} "
            f"negatives from ranks {cfg.ranks}: it needs at least {start + cfg.negatives}. "
            "Give a larger --corpus, or lower --negatives or the start of --ranks."
        )
    out = Path(cfg.out)
    work = Path(cfg.work_dir) if cfg.work_dir else out.parent / f".{out.name}.mining"
    with process_group() as state:
        info = DistInfo(state.process_index, state.num_processes, state.local_process_index)
        if cfg.method == "dense":
            device = cfg.device if cfg.device is not None or info.world_size == 1 else str(state.device)
            ranker, identity = _dense_ranker(cfg, task, pool, work, info, device, show_progress)
        else:
            ranker, identity = BM25Ranker(pool, cfg.depth), {}
        meta = {
            "method": cfg.method, **identity, "pool": corpus_hash(pool),
            "examples": _examples_digest(examples, cfg.keep_existing), "queries": len(examples),
            "part_size": cfg.shard_size, "depth": cfg.depth, "ranks": cfg.ranks, "negatives": cfg.negatives,
            "seed": cfg.seed, "keep_existing": cfg.keep_existing,
        }
        prepare_work_dir(work / "parts", meta, info)
        _mine_parts(cfg, examples, pool, ranker, work / "parts", info, show_progress)
        barrier()
        if not info.is_main:
            return None
        chosen = _load_parts(work / "parts", len(examples), cfg.shard_size, cfg.negatives)
        write_examples(out, (
            TrainExample(e.query_id, e.query, e.positives,
                         (e.negatives if cfg.keep_existing else ()) + tuple(pool[j] for j in row if j >= 0))
            for e, row in zip(examples, chosen.tolist(), strict=True)
        ))
        if not cfg.keep_work:
            for sub in ("pool", "parts"):
                shutil.rmtree(work / sub, ignore_errors=True)
            if work.is_dir() and not any(work.iterdir()):
                work.rmdir()
    return MiningReport(
        task=task.name, method=cfg.method, output=str(out), pool=len(pool), k=cfg.negatives, ranks=cfg.window,
        depth=cfg.depth, seed=cfg.seed, counts=(chosen >= 0).sum(axis=1).tolist(),
        seconds=time.perf_counter() - started,
    )

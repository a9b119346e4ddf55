"""Benchmark loaders for the official on-disk layouts (BEIR, MIRACL, MKQA) and the bundled copies.

BEIR     <dir>/corpus.jsonl[.gz] {_id,title,text}; queries.jsonl[.gz] {_id,text};
         qrels/<split>.tsv (query-id, corpus-id, score; header line). A folder of such folders
         is a suite (one collection per dataset).
MIRACL   per language <dir>/<lang>/: topics.miracl-v1.0-<lang>-<split>.tsv (qid<TAB>query),
         qrels.miracl-v1.0-<lang>-<split>.tsv (TREC "qid Q0 docid rel"), corpus/docs-*.jsonl[.gz]
         {docid,title,text}. The HF release nesting (topics/, qrels/ subfolders,
         miracl-corpus-v1.0-<lang>/ corpus folder, miracl-v1.0-<lang> folder names) is read too.
MKQA     <dir>/mkqa.jsonl[.gz] official records {example_id, query, queries{lang: text},
         answers{lang: [{type, text, aliases}]}} searched against <dir>/corpus.jsonl[.gz] (BEIR
         corpus layout). Answers are judged against the English corpus, so `answers["en"]` is used
         for every language; records whose English answers are all "unanswerable"/"long_answer"
         or empty are skipped and counted.

Judged queries whose text is missing are dropped with a warning; qrels naming documents absent
from the corpus are kept (they stay unretrievable, as in BEIR) and reported as a warning. A corpus is
read into a memory-mapped `CorpusStore` (converted once, `index.corpus_store`), never into a list.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tdro_suite.bundled import BENCHMARK_KINDS, benchmark_dir
from tdro_suite.bundled import ROOT as BUNDLED_ROOT
from tdro_suite.common.errors import DataError
from tdro_suite.common.jsonl import json_lines, numbered_lines
from tdro_suite.evaluation.download import fetch_beir
from tdro_suite.evaluation.layout import first_file, is_beir_dataset
from tdro_suite.index.corpus_store import CorpusStore, open_corpus

log = logging.getLogger(__name__)

KINDS = ("beir", "miracl", "mkqa")
DEFAULT_SPLIT = {"beir": "test", "miracl": "dev", "mkqa": "test"}
SKIPPED_ANSWER_TYPES = {"unanswerable", "long_answer"}


@dataclass
class Collection:
    """One evaluation unit: a BEIR dataset, a MIRACL language, or an MKQA language."""

    name: str
    corpus: CorpusStore  # on disk, memory-mapped: MIRACL-en's 32.9M passages are never Python objects
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    answers: dict[str, list[str]] | None = None
    language: str | None = None
    source: str = ""
    group: str | None = None  # collections averaged into one row first (cqadupstack's 12 forums)
    instruction: str | None = None  # the dataset's query instruction, for models that use instructions
    answer_match: str = "normalized"  # MKQA: "dpr" for the public protocol (answers.answer_recall)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning("%s: %s", self.name, message)


@dataclass
class Benchmark:
    name: str
    kind: str
    split: str
    collections: list[Collection] | LazyCollections  # lazy: a public benchmark, read as iterated
    source: str = ""


# ---------------------------------------------------------------- small readers
def _tsv_rows(path: Path, sep: str | None):
    for lineno, line in numbered_lines(path):
        if line.strip():
            yield f"{path}:{lineno}", lineno, line.rstrip("\n\r").split(sep)


def read_beir_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for where, obj in json_lines(path):
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object.")
        qid = obj.get("_id", obj.get("id"))
        if qid is None or str(qid) == "":
            raise DataError(f"{where}: field '_id' is missing.")
        text = obj.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: field 'text' is missing or empty (query '{qid}').")
        queries[str(qid)] = text
    return queries


def _relevance(value: str, where: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise DataError(f"{where}: relevance '{value}' is not a number.") from None


def read_beir_qrels(path: Path) -> dict[str, dict[str, int]]:
    """`query-id<TAB>corpus-id<TAB>score` with an optional header line."""
    qrels: dict[str, dict[str, int]] = {}
    for where, lineno, cols in _tsv_rows(path, "\t"):
        if lineno == 1 and cols[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue
        if len(cols) < 3:
            raise DataError(f"{where}: expected 3 tab-separated columns (query-id, corpus-id, score), got {len(cols)}.")
        qid, docid, score = cols[0].strip(), cols[1].strip(), cols[-1].strip()
        qrels.setdefault(qid, {})[docid] = _relevance(score, where)
    return qrels


def read_trec_qrels(path: Path) -> dict[str, dict[str, int]]:
    """TREC qrels: `qid Q0 docid rel`, whitespace-separated."""
    qrels: dict[str, dict[str, int]] = {}
    for where, _, cols in _tsv_rows(path, None):
        if len(cols) != 4:
            raise DataError(f"{where}: expected 4 columns 'qid Q0 docid rel', got {len(cols)}.")
        qrels.setdefault(cols[0], {})[cols[2]] = _relevance(cols[3], where)
    return qrels


def read_topics(path: Path) -> dict[str, str]:
    """MIRACL topics: `qid<TAB>query`."""
    topics: dict[str, str] = {}
    for where, _, cols in _tsv_rows(path, "\t"):
        if len(cols) < 2 or not cols[1].strip():
            raise DataError(f"{where}: expected 'qid<TAB>query' with a non-empty query.")
        topics[cols[0].strip()] = cols[1].strip()
    return topics


def attach_judgements(collection: Collection, qrels: dict[str, dict[str, int]], qrels_path: Path) -> None:
    """Keep judged queries that have text; warn about queries without text and unknown documents."""
    no_text = sorted(q for q in qrels if q not in collection.queries)
    if no_text:
        collection.warn(
            f"{qrels_path}: {len(no_text)} judged queries have no text in the queries file and are skipped "
            f"(e.g. {', '.join(no_text[:3])})."
        )
    judged_ids = {d for q, judged in qrels.items() if q not in no_text for d in judged}
    unknown = sorted(judged_ids - collection.corpus.present(judged_ids))
    if unknown:
        collection.warn(
            f"{qrels_path}: {len(unknown)} judged documents are not in the corpus and can never be retrieved "
            f"(e.g. {', '.join(unknown[:3])}); they still count as relevant."
        )
    collection.qrels = {q: judged for q, judged in qrels.items() if q in collection.queries}
    collection.queries = {q: collection.queries[q] for q in collection.qrels}
    if not collection.qrels:
        raise DataError(f"{qrels_path}: no judged query has a text; nothing to evaluate.")


# ---------------------------------------------------------------- BEIR
def load_beir_dataset(folder: str | Path, split: str = "test") -> Collection:
    folder = Path(folder)
    corpus_path = first_file(folder, "corpus.jsonl")
    queries_path = first_file(folder, "queries.jsonl")
    if corpus_path is None or queries_path is None:
        raise DataError(f"{folder}: a BEIR dataset needs corpus.jsonl and queries.jsonl (optionally .gz).")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise DataError(
            f"{qrels_path}: no qrels for split '{split}'; available splits: {', '.join(available) or 'none'}."
        )
    collection = Collection(
        name=folder.name, corpus=open_corpus(corpus_path), queries=read_beir_queries(queries_path), source=str(folder)
    )
    attach_judgements(collection, read_beir_qrels(qrels_path), qrels_path)
    return collection


def load_beir(path: str | Path, split: str = "test", names: list[str] | None = None) -> Benchmark:
    """A BEIR dataset folder, or a folder of them (optionally only `names`)."""
    path = Path(path)
    if is_beir_dataset(path):
        folders = [path]
    else:
        folders = sorted(p for p in path.iterdir() if p.is_dir() and is_beir_dataset(p)) if path.is_dir() else []
        if names:
            missing = sorted(set(names) - {p.name for p in folders})
            if missing:
                found = ", ".join(p.name for p in folders)
                raise DataError(f"{path}: no BEIR dataset named {', '.join(missing)}; found {found}.")
            folders = [p for p in folders if p.name in names]
    if not folders:
        raise DataError(f"{path}: not a BEIR dataset (corpus.jsonl + queries.jsonl + qrels/) nor a folder of them.")
    return Benchmark(path.name, "beir", split, [load_beir_dataset(f, split) for f in folders], str(path))


# ---------------------------------------------------------------- MIRACL
_TOPICS = re.compile(r"^topics\.miracl-v1\.0-(?P<lang>[a-z]+)-(?P<split>[\w-]+)\.tsv(\.gz)?$")


def _miracl_files(folder: Path, kind: str) -> list[Path]:
    return sorted([*folder.glob(f"{kind}.miracl-v1.0-*.tsv*"), *folder.glob(f"{kind}/{kind}.miracl-v1.0-*.tsv*")])


def is_miracl_language(folder: Path) -> bool:
    return bool(_miracl_files(folder, "topics"))


def _miracl_corpus_files(folder: Path, lang: str) -> list[Path]:
    for sub in ("corpus", f"miracl-corpus-v1.0-{lang}", "."):
        files = sorted((folder / sub).glob("docs-*.jsonl*"))
        if files:
            return files
    single = first_file(folder, "corpus.jsonl")
    return [single] if single else []


def load_miracl_language(folder: str | Path, split: str = "dev", lang: str | None = None) -> Collection:
    folder = Path(folder)
    topics_files = _miracl_files(folder, "topics")
    langs = {m.group("lang") for p in topics_files if (m := _TOPICS.match(p.name))}
    if lang is None:
        if len(langs) != 1:
            raise DataError(f"{folder}: expected the topics of one language, found {sorted(langs) or 'none'}.")
        lang = next(iter(langs))
    topics = next((p for p in topics_files if p.name.startswith(f"topics.miracl-v1.0-{lang}-{split}.tsv")), None)
    qrels_prefix = f"qrels.miracl-v1.0-{lang}-{split}.tsv"
    qrels = next((p for p in _miracl_files(folder, "qrels") if p.name.startswith(qrels_prefix)), None)
    if topics is None or qrels is None:
        splits = sorted({m.group("split") for p in topics_files if (m := _TOPICS.match(p.name))})
        raise DataError(
            f"{folder}: no MIRACL topics+qrels for language '{lang}', split '{split}'; "
            f"splits found: {', '.join(splits) or 'none'}."
        )
    corpus_files = _miracl_corpus_files(folder, lang)
    if not corpus_files:
        raise DataError(f"{folder}: no MIRACL corpus (corpus/docs-*.jsonl[.gz] or miracl-corpus-v1.0-{lang}/).")
    collection = Collection(
        name=lang, corpus=open_corpus(corpus_files), queries=read_topics(topics), language=lang, source=str(folder)
    )
    attach_judgements(collection, read_trec_qrels(qrels), qrels)
    return collection


def _miracl_lang_of(folder: Path) -> str:
    return folder.name.removeprefix("miracl-v1.0-")


def load_miracl(path: str | Path, split: str = "dev", langs: list[str] | None = None) -> Benchmark:
    """A MIRACL language folder, or a folder of language folders (optionally only `langs`)."""
    path = Path(path)
    if is_miracl_language(path):
        collections = [load_miracl_language(path, split)]
    else:
        subfolders = sorted(path.iterdir()) if path.is_dir() else []
        folders = {_miracl_lang_of(p): p for p in subfolders if p.is_dir() and is_miracl_language(p)}
        if not folders:
            raise DataError(f"{path}: not a MIRACL language folder (topics.miracl-v1.0-*.tsv) nor a folder of them.")
        if langs:
            missing = sorted(set(langs) - set(folders))
            if missing:
                raise DataError(f"{path}: no MIRACL language {', '.join(missing)}; found {', '.join(folders)}.")
            folders = {lang: folders[lang] for lang in langs}
        collections = [load_miracl_language(folder, split, lang) for lang, folder in folders.items()]
    return Benchmark(path.name, "miracl", split, collections, str(path))


# ---------------------------------------------------------------- MKQA
def is_mkqa(folder: Path) -> bool:
    return first_file(folder, "mkqa.jsonl") is not None


def accepted_answers(answers: list, where: str) -> list[str]:
    """Answer texts and aliases of the usable answer entries of one record."""
    out: list[str] = []
    if not isinstance(answers, list):
        raise DataError(f"{where}: field 'answers.en' must be a list of answer objects.")
    for answer in answers:
        if not isinstance(answer, dict):
            raise DataError(f"{where}: each answer must be an object with type/text/aliases.")
        if answer.get("type") in SKIPPED_ANSWER_TYPES:
            continue
        for text in [answer.get("text"), *(answer.get("aliases") or [])]:
            if isinstance(text, str) and text.strip():
                out.append(text)
    return out


def load_mkqa(path: str | Path, langs: list[str] | None = None) -> Benchmark:
    """MKQA questions per language against the English corpus; one collection per language."""
    path = Path(path)
    records_path = first_file(path, "mkqa.jsonl")
    corpus_path = first_file(path, "corpus.jsonl")
    if records_path is None or corpus_path is None:
        raise DataError(f"{path}: an MKQA folder needs mkqa.jsonl and corpus.jsonl (optionally .gz).")
    corpus = open_corpus(corpus_path)
    per_lang: dict[str, dict[str, str]] = {}
    answers: dict[str, list[str]] = {}
    skipped = 0
    for where, obj in json_lines(records_path):
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object.")
        qid = obj.get("example_id")
        if qid is None:
            raise DataError(f"{where}: field 'example_id' is missing.")
        queries = obj.get("queries")
        if not isinstance(queries, dict) or not queries:
            raise DataError(f"{where}: field 'queries' must map languages to question texts.")
        en = (obj.get("answers") or {}).get("en")
        if en is None:
            raise DataError(f"{where}: field 'answers.en' is missing (answers are judged against the English corpus).")
        accepted = accepted_answers(en, where)
        if not accepted:
            skipped += 1
            continue
        answers[str(qid)] = accepted
        for lang, text in queries.items():
            if isinstance(text, str) and text.strip():
                per_lang.setdefault(lang, {})[str(qid)] = text
    available = sorted(per_lang)
    chosen = langs or available
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise DataError(
            f"{records_path}: no questions in language {', '.join(missing)}; available: {', '.join(available)}."
        )
    collections = []
    for lang in chosen:
        collection = Collection(
            name=lang, corpus=corpus, queries=per_lang[lang],
            answers={q: answers[q] for q in per_lang[lang]}, language=lang, source=str(path),
        )
        if skipped:
            collection.warn(f"{records_path}: {skipped} questions without a usable English answer were skipped.")
        collections.append(collection)
    if not collections:
        raise DataError(f"{records_path}: no question has a usable English answer.")
    return Benchmark(path.name, "mkqa", "test", collections, str(path))


# ---------------------------------------------------------------- entry point
def detect_kind(path: Path) -> str:
    if is_mkqa(path):
        return "mkqa"
    if is_beir_dataset(path) or (path.is_dir() and any(is_beir_dataset(p) for p in path.iterdir() if p.is_dir())):
        return "beir"
    if is_miracl_language(path) or (path.is_dir() and any(is_miracl_language(p) for p in path.iterdir() if p.is_dir())):
        return "miracl"
    raise DataError(
        f"{path}: cannot tell the benchmark layout: expected a BEIR folder (corpus.jsonl, queries.jsonl, qrels/), "
        f"a MIRACL folder (topics.miracl-v1.0-*.tsv) or an MKQA folder (mkqa.jsonl + corpus.jsonl), or folders of them."
    )


BUNDLED_PREFIX = "bundled:"
# `bundled:<name>` → its layout. beir, miracl and mkqa are the offline stand-ins of the public benchmarks;
# general is a benchmark of its own (English Wikipedia sections, eval/data/build_general.py) that checks
# whether fine-tuning forgot general retrieval: a separate folder, never part of bundled:beir's average.
BUNDLED = {"beir": "beir", "miracl": "miracl", "mkqa": "mkqa", "general": "beir"}


def bundled_benchmark(name: str) -> tuple[str, Path]:
    """Layout and folder of `bundled:<name>`."""
    if name in BENCHMARK_KINDS:
        return BUNDLED[name], benchmark_dir(name)
    path = BUNDLED_ROOT / "benchmarks" / name
    if not path.is_dir():
        raise DataError(f"The bundled benchmark '{BUNDLED_PREFIX}{name}' is missing at {path}; "
                        "rebuild it with eval/data/build_general.py.")
    return BUNDLED[name], path


def load_benchmark(
    bench: str | Path, *, split: str | None = None, langs: list[str] | None = None
) -> Benchmark:
    """A public benchmark (`miracl`, `miracl-hn`, `mkqa`, `beir`, `beir:<name>`; fetched once, pinned),
    a bundled one (`bundled:beir|miracl|mkqa`, the offline stand-ins, or `bundled:general`, general English;
    offline) or a PATH in one of the official layouts.

    `langs` picks MIRACL / MKQA languages or BEIR dataset names; `split` defaults to BEIR test
    (MS MARCO dev), MIRACL dev.
    """
    from tdro_suite.evaluation.public import PUBLIC_NAMES, is_public

    text = str(bench)
    name = text.removeprefix(BUNDLED_PREFIX)
    if text.startswith(BUNDLED_PREFIX) and name in BUNDLED:
        kind, path = bundled_benchmark(name)
    elif text.startswith(BUNDLED_PREFIX):
        raise DataError(f"'{text}': the bundled benchmarks are {', '.join(BUNDLED_PREFIX + k for k in BUNDLED)}.")
    elif is_public(text):
        return load_public(text, split=split, langs=langs)
    elif text.startswith("beir:"):  # another BEIR zip, downloaded once when online
        kind, path = "beir", fetch_beir(text.removeprefix("beir:"))
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise DataError(
                f"Benchmark '{text}' is neither a public benchmark ({', '.join(PUBLIC_NAMES)}, beir:<name>), "
                f"a bundled one ({', '.join(BUNDLED_PREFIX + k for k in BUNDLED)}), nor an existing folder."
            )
        kind = detect_kind(path)
    split = split or DEFAULT_SPLIT[kind]
    if kind == "beir":
        benchmark = load_beir(path, split, names=langs)
    elif kind == "miracl":
        benchmark = load_miracl(path, split, langs)
    else:
        benchmark = load_mkqa(path, langs)
    if text.startswith(BUNDLED_PREFIX):
        benchmark.name = text
    return benchmark


class LazyCollections:
    """A public benchmark's collections, each read from its cached folder only when iterated to: queries and
    qrels of one collection at a time in memory, its corpus mapped from disk (MIRACL's 18 corpora hold 106M
    passages)."""

    def __init__(self, fetched: list[tuple[Any, Path]], split: str | None, langs: list[str] | None) -> None:
        self.fetched, self.split, self.langs = fetched, split, langs

    def __len__(self) -> int:
        return len(self.fetched)

    def __iter__(self) -> Iterator[Collection]:
        for public, folder in self.fetched:
            if public.kind == "mkqa":  # one English corpus shared by every language
                for collection in load_mkqa(folder, self.langs).collections:
                    collection.instruction, collection.answer_match = public.instruction, "dpr"
                    yield collection
                continue
            collection = load_beir_dataset(folder, self.split or public.split)
            collection.name, collection.language, collection.group = public.name, public.language, public.group
            collection.instruction = public.instruction
            yield collection


def load_public(bench: str, *, split: str | None = None, langs: list[str] | None = None) -> Benchmark:
    """Fetch (once, all of it before anything is scored) and load a public benchmark lazily; see
    `tdro_suite.evaluation.public`."""
    from tdro_suite.evaluation.public import fetch_public

    kind = "beir" if bench.startswith("beir") else "mkqa" if bench == "mkqa" else "miracl"
    fetched = fetch_public(bench, None if kind == "mkqa" else langs)
    splits = sorted({c.split for c, _ in fetched})
    return Benchmark(bench, kind, split or "/".join(splits), LazyCollections(fetched, split, langs), "public")

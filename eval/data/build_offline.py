#!/usr/bin/env python
"""Build the bundled offline data: a multi-task training mixture and BEIR / MIRACL / MKQA-layout benchmarks.

Sources (all installable, see DATASHEET.md): chatterbot-corpus and bm25s (pip, the `build-data` extra),
CPython's standard library, and Debian packages installed with
    apt-get update && apt-get install --no-install-recommends \\
        sword-text-kjv sword-text-sparv sword-dict-naves libsword-utils wordnet-base

Usage:
    python eval/data/build_offline.py                 # writes tdro_suite/bundled/{train,benchmarks}
    python eval/data/build_offline.py --out /tmp/b    # somewhere else
    python eval/data/build_offline.py --verify        # rebuild in a temp folder, compare bytes with the bundle

Evaluation sets are chosen first; training candidates that equal or nearly equal (SimHash) any evaluation
query are removed before sampling; hard negatives are mined with BM25, skipping the top rank and every
known positive. Everything is seeded and written with gzip mtime=0, so the same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import offline_sources as src  # noqa: E402

from tdro_suite.common.io import atomic_dir, atomic_write_json, atomic_write_text  # noqa: E402
from tdro_suite.data.dedup import find_contamination  # noqa: E402
from tdro_suite.data.negatives import BM25Index, mine_hard_negatives  # noqa: E402
from tdro_suite.data.tasks import write_manifest  # noqa: E402
from tdro_suite.data.text import normalize_text, truncate  # noqa: E402
from tdro_suite.data.types import Passage, TaskInfo, TrainExample  # noqa: E402
from tdro_suite.data.writer import write_examples, write_jsonl, write_text_lines  # noqa: E402

DEFAULT_SEED = 13
N_NEGATIVES = 7
MAX_TRAIN = 1000  # examples per task (the demo must train on all tasks in minutes on 2 CPU cores)
MAX_EVAL_QUERIES = 400
MAX_BEIR_CORPUS = 8000
MAX_REPLIES = 3  # chatterbot messages with more distinct replies than this are too generic to train on
SIMHASH_DISTANCE = 12  # SimHash blocking; a near duplicate also needs 3-gram Jaccard >= 0.8
MIN_JACCARD = 0.8

LICENSES = {
    "chatterbot": "BSD-3-Clause (chatterbot-corpus)",
    "stdlib": "PSF-2.0 (CPython standard library)",
    "wordnet": "WordNet 3.0 license (permissive, Princeton University)",
    "kjv": "Public domain (KJV, CrossWire engKJV2006eb)",
    "rv": "Public domain (Reina-Valera 1909, CrossWire spaRV1909eb)",
    "nave": "Public domain (Nave's Topical Bible, CrossWire Nave)",
}
CHATTERBOT_TRAIN = {  # task language → chatterbot folders (zh: simplified and traditional script)
    "en": ["english"],
    "zh": ["chinese", "traditionalchinese"],
    "ko": ["korean"],
    "uk": ["ukrainian"],
    "fa": ["persian"],
    "pt": ["portuguese"],
    "nl": ["dutch"],
}
OTHER_BUILDS = ("benchmarks/general",)  # bundled folders another script builds (build_general.py)
MKQA_LANGS = {"en": "english", "it": "italian", "ja": "japanese"}
MIRACL_LANGS = {"bn": "bengali", "de": "german", "es": "spanish", "fr": "french", "id": "indonesian"}


def log(message: str) -> None:
    print(f"[build {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- candidate examples before decontamination and mining --------------------------------------


@dataclass
class Candidate:
    """One training query with its positive and every docid known to be relevant."""

    query: str
    positive: str  # docid in the task's pool
    known: set[str]
    search_text: str = ""  # what BM25 searches with (the English side for cross-lingual tasks)


@dataclass
class TaskPlan:
    info: TaskInfo
    pool: list[Passage]
    candidates: list[Candidate]
    index: BM25Index | None = None  # shared index when several tasks mine the same pool
    eligible: list[bool] | None = None  # pool passages allowed as negatives (None: all)
    written_as: Callable[[int], Passage] | None = None  # pool index → passage written (cross-lingual tasks)
    stats: dict = field(default_factory=dict)


def _rng(seed: int, name: str) -> random.Random:
    return random.Random(f"{seed}:{name}")


# --- evaluation sets ---------------------------------------------------------------------------


def build_beir_nave(kjv: dict[str, str], nave: list[src.NaveQuery], seed: int) -> tuple[dict, set[str]]:
    """Hold out whole Nave topics; their subtopic queries judged against KJV verses (BEIR layout)."""
    rng = _rng(seed, "beir-nave")
    topics = sorted({q.topic for q in nave})
    rng.shuffle(topics)
    by_topic = defaultdict(list)
    for q in nave:
        if 1 <= len(q.verses) <= 30:
            by_topic[q.topic].append(q)
    held: set[str] = set()
    queries: list[src.NaveQuery] = []
    seen_text: set[str] = set()
    for topic in topics:
        if len(queries) >= 300:
            break
        fresh = [q for q in by_topic[topic] if normalize_text(q.text) not in seen_text]
        if not fresh or len(queries) + len(fresh) > 300:
            continue
        held.add(topic)
        for q in fresh:
            seen_text.add(normalize_text(q.text))
            queries.append(q)
    order = {v: i for i, v in enumerate(kjv)}
    judged = sorted({v for q in queries for v in q.verses}, key=order.__getitem__)
    judged_set = set(judged)
    others = [v for v in kjv if v not in judged_set]
    extra = rng.sample(others, MAX_BEIR_CORPUS - len(judged))
    corpus_ids = sorted(set(judged) | set(extra), key=order.__getitem__)
    return {
        "queries": [(f"nave-{i}", q.text, q.verses) for i, q in enumerate(queries)],
        "corpus": [(v, kjv[v]) for v in corpus_ids],
    }, held


def build_miracl(seed: int) -> dict[str, dict]:
    """Per language: chatterbot questions judged against that language's answers (MIRACL layout)."""
    out = {}
    for lang, folder in MIRACL_LANGS.items():
        pairs = src.chatterbot_pairs(folder)
        answers: dict[str, str] = {}
        for p in pairs:
            answers.setdefault(normalize_text(p.answer), p.answer)
        docids = {norm: f"{i}#0" for i, norm in enumerate(answers)}
        judged: dict[str, set[str]] = defaultdict(set)
        text_of: dict[str, str] = {}
        for p in pairs:
            key = normalize_text(p.question)
            text_of.setdefault(key, p.question)
            judged[key].add(docids[normalize_text(p.answer)])
        keys = list(judged)[:MAX_EVAL_QUERIES]
        out[lang] = {
            "topics": [(str(i), text_of[k], sorted(judged[k])) for i, k in enumerate(keys)],
            "corpus": [(docids[n], truncate(t)) for n, t in answers.items()],
        }
    return out


def build_mkqa(wordnet: list[src.Synset], seed: int) -> tuple[dict, set[tuple[str, int]]]:
    """Parallel chatterbot questions (en/it/ja) with English answers, against an English corpus."""
    rng = _rng(seed, "mkqa")
    per_lang = {code: {(p.topic, p.index): p for p in src.chatterbot_pairs(f)} for code, f in MKQA_LANGS.items()}
    sizes = {code: src.chatterbot_topic_sizes(f) for code, f in MKQA_LANGS.items()}
    aligned = sorted(t for t, n in sizes["en"].items() if all(sizes[c].get(t) == n for c in MKQA_LANGS if c != "en"))
    english_answers: dict[str, str] = {}
    for p in src.chatterbot_pairs("english"):
        english_answers.setdefault(normalize_text(p.answer), truncate(p.answer))
    distractors = rng.sample(wordnet, 4000)
    corpus = [(f"cb-{i}", "", t) for i, t in enumerate(english_answers.values())]
    corpus += [(f"wn-{s.offset}", ", ".join(s.lemmas[:3]), s.definition) for s in distractors]
    normalised_corpus = [f" {normalize_text(f'{title} {text}')} " for _, title, text in corpus]
    records, held, seen = [], set(), set()
    for key in sorted(k for k in per_lang["en"] if k[0] in aligned):
        en = per_lang["en"][key]
        norm_q, norm_a = normalize_text(en.question), normalize_text(en.answer)
        if norm_q in seen or not all(key in per_lang[c] for c in MKQA_LANGS):
            continue
        if len(norm_a) < 3 or len(norm_a.split()) > 12:
            continue
        matches = sum(1 for doc in normalised_corpus if f" {norm_a} " in doc)
        if not 1 <= matches <= 10:  # the answer must be findable and specific
            continue
        seen.add(norm_q)
        held.add(key)
        example_id = int.from_bytes(hashlib.blake2b(f"{key[0]}:{key[1]}".encode(), digest_size=8).digest(), "big")
        records.append(
            {
                "example_id": example_id,
                "query": en.question,
                "queries": {c: per_lang[c][key].question for c in MKQA_LANGS},
                "answers": {
                    c: [{"type": "short_phrase", "text": per_lang[c][key].answer, "aliases": []}] for c in MKQA_LANGS
                },
            }
        )
    records = records[:MAX_EVAL_QUERIES]
    return {"records": records, "corpus": corpus}, held


# --- training tasks ----------------------------------------------------------------------------


def chatterbot_task(lang: str, folders: list[str], held: set[tuple[str, int]]) -> TaskPlan:
    pairs = [p for f in folders for p in src.chatterbot_pairs(f, all_turns=True) if (p.topic, p.index) not in held]
    answers: dict[str, Passage] = {}
    for p in pairs:
        norm = normalize_text(p.answer)
        if norm and norm not in answers:
            answers[norm] = Passage(f"{lang}-{len(answers)}", truncate(p.answer))
    grouped: dict[str, Candidate] = {}
    for p in pairs:
        q, a = normalize_text(p.question), normalize_text(p.answer)
        if not q or not a:
            continue
        docid = answers[a].docid
        if q in grouped:
            grouped[q].known.add(docid)
        else:
            grouped[q] = Candidate(p.question, docid, {docid}, p.question)
    # a message with many different replies ("yes", "ok") has no answer to retrieve: leave it out
    candidates = [c for c in grouped.values() if len(c.known) <= MAX_REPLIES]
    info = TaskInfo(
        name=f"qa_{lang}_chatterbot",
        path=f"qa_{lang}_chatterbot.jsonl.gz",
        instruction="Given a message in a conversation, retrieve the reply to it",
        languages=[lang],
        symmetric=False,
        source="chatterbot-corpus " + "+".join(folders) + " (every message -> reply pair of each conversation)",
        license=LICENSES["chatterbot"],
        domain="conversational QA",
    )
    return TaskPlan(info, list(answers.values()), candidates)


def code_task(units: list[src.CodeUnit]) -> TaskPlan:
    pool, candidates, seen = [], [], set()
    for u in units:
        docid = f"{u.module}:{u.qualname}"
        pool.append(Passage(docid, truncate(u.code)))
        norm = normalize_text(u.summary)
        if norm not in seen:
            seen.add(norm)
            candidates.append(Candidate(u.summary, docid, {docid}, u.summary))
    info = TaskInfo(
        name="code_python_stdlib",
        path="code_python_stdlib.jsonl.gz",
        instruction="Given a description of what a piece of Python code does, retrieve the code",
        languages=["en"],
        source="CPython standard library (docstring summary -> definition without its docstring)",
        license=LICENSES["stdlib"],
        domain="code search",
    )
    return TaskPlan(info, pool, candidates)


def wordnet_task(synsets: list[src.Synset], seed: int) -> TaskPlan:
    rng = _rng(seed, "wordnet")
    senses: dict[str, list[src.Synset]] = defaultdict(list)
    for s in synsets:
        for lemma in s.lemmas:
            if lemma.isalpha() and lemma.islower() and len(lemma) >= 4:
                senses[lemma].append(s)
    lemmas = sorted(w for w, ss in senses.items() if len(ss) <= 3)
    chosen = rng.sample(lemmas, 3 * MAX_TRAIN)
    used: dict[str, src.Synset] = {}
    for w in chosen:
        for s in senses[w]:
            used[s.offset] = s
    for s in rng.sample(synsets, 6000):
        used.setdefault(s.offset, s)
    pool = [Passage(s.offset, s.definition) for s in sorted(used.values(), key=lambda s: s.offset)]
    candidates = [Candidate(w, senses[w][0].offset, {s.offset for s in senses[w]}, w) for w in chosen]
    info = TaskInfo(
        name="definition_wordnet",
        path="definition_wordnet.jsonl.gz",
        instruction="Given an English word, retrieve its dictionary definition",
        languages=["en"],
        source="WordNet 3.0 (Debian wordnet-base): lemma -> gloss of one of its senses",
        license=LICENSES["wordnet"],
        domain="lexicon",
    )
    return TaskPlan(info, pool, candidates)


def bible_tasks(
    kjv: dict[str, str], rv: dict[str, str], nave: list[src.NaveQuery], held_topics: set[str], seed: int
) -> tuple[list[TaskPlan], dict]:
    """Nave topic → KJV verse, topic → Spanish verse, EN ↔ ES parallel verses, verse ↔ related verse."""
    rng = _rng(seed, "bible")
    aligned = [v for v in kjv if v in rv and 0.5 <= len(rv[v]) / len(kjv[v]) <= 2.0]
    alignment = {"kjv_verses": len(kjv), "rv_verses": len(rv), "aligned": len(aligned)}
    kjv_pool = [Passage(v, truncate(kjv[v])) for v in kjv]
    position = {v: i for i, v in enumerate(kjv)}
    index = BM25Index(kjv_pool)
    rv_of = {v: Passage(f"es:{v}", truncate(rv[v])) for v in aligned}
    aligned_set = set(aligned)

    eligible = [v in aligned_set for v in kjv]

    def to_spanish(i: int) -> Passage:
        return rv_of[kjv_pool[i].docid]  # only aligned verses are eligible, and positives are aligned

    train_queries = [q for q in nave if q.topic not in held_topics and len(q.verses) <= 30]
    topic_verse = [Candidate(q.text, rng.choice(q.verses), set(q.verses), q.text) for q in train_queries]
    plans = [
        TaskPlan(
            TaskInfo(
                name="topic_verse_nave",
                path="topic_verse_nave.jsonl.gz",
                instruction="Given a Bible topic, retrieve a verse about it",
                languages=["en"],
                source="Nave's Topical Bible judgements against the KJV (topics disjoint from the BEIR benchmark)",
                license=f"{LICENSES['nave']}; {LICENSES['kjv']}",
                domain="religious text",
            ),
            kjv_pool,
            topic_verse,
            index=index,
        )
    ]
    es_candidates = []
    for q in train_queries:
        verses = [v for v in q.verses if v in aligned_set]
        if verses:
            es_candidates.append(Candidate(q.text, rng.choice(verses), set(q.verses), q.text))
    plans.append(
        TaskPlan(
            TaskInfo(
                name="topic_verse_nave_es",
                path="topic_verse_nave_es.jsonl.gz",
                instruction="Given a Bible topic in English, retrieve a Spanish verse about it",
                languages=["en", "es"],
                source="Nave's topics (English) judged against Reina-Valera 1909 verses via KJV verse ids",
                license=f"{LICENSES['nave']}; {LICENSES['rv']}",
                domain="religious text",
            ),
            kjv_pool,
            es_candidates,
            index=index,
            eligible=eligible,
            written_as=to_spanish,
        )
    )
    parallel = [Candidate(kjv[v], v, {v}, kjv[v]) for v in aligned]  # query English, positive its Spanish
    plans.append(
        TaskPlan(
            TaskInfo(
                name="parallel_verse_en_es",
                path="parallel_verse_en_es.jsonl.gz",
                instruction="Retrieve the translation of the given Bible verse",
                languages=["en", "es"],
                symmetric=True,
                source="KJV verse -> Reina-Valera 1909 verse with the same KJV-versification id (length-ratio checked)",
                license=f"{LICENSES['kjv']}; {LICENSES['rv']}",
                domain="parallel text",
            ),
            kjv_pool,
            parallel,
            index=index,
            eligible=eligible,
            written_as=to_spanish,
        )
    )
    related = []
    for q in train_queries:
        if 2 <= len(q.verses) <= 12:
            a, b = rng.sample(q.verses, 2)
            if abs(position[a] - position[b]) > 1:  # neighbouring verses would be too easy
                related.append(Candidate(kjv[a], b, set(q.verses), kjv[a]))
    plans.append(
        TaskPlan(
            TaskInfo(
                name="related_verse_nave",
                path="related_verse_nave.jsonl.gz",
                instruction="Given a Bible verse, retrieve another verse on the same topic",
                languages=["en"],
                symmetric=True,
                source="Pairs of KJV verses listed under the same Nave subtopic (non-adjacent)",
                license=f"{LICENSES['nave']}; {LICENSES['kjv']}",
                domain="religious text",
            ),
            kjv_pool,
            related,
            index=index,
        )
    )
    return plans, alignment


# --- decontamination, sampling, mining ---------------------------------------------------------


def decontaminate(plans: Sequence[TaskPlan], eval_queries: list[str]) -> dict[str, dict]:
    """Drop training candidates that equal or nearly equal an evaluation query; count them per task."""
    report = {}
    for plan in plans:
        hits = find_contamination(
            [c.query for c in plan.candidates], eval_queries, max_distance=SIMHASH_DISTANCE, min_jaccard=MIN_JACCARD
        )
        drop = {h.train_index for h in hits}
        report[plan.info.name] = {
            "candidates": len(plan.candidates),
            "removed_exact": sum(1 for h in hits if h.kind == "exact"),
            "removed_near": sum(1 for h in hits if h.kind == "near"),
            "near_examples": [
                {
                    "train": plan.candidates[h.train_index].query,
                    "eval": eval_queries[h.eval_index],
                    "jaccard": h.similarity,
                }
                for h in hits
                if h.kind == "near"
            ][:5],
        }
        plan.candidates = [c for i, c in enumerate(plan.candidates) if i not in drop]
    return report


def realise(plan: TaskPlan, seed: int) -> list[TrainExample]:
    """Sample up to MAX_TRAIN candidates, mine their negatives with BM25, build the examples."""
    rng = _rng(seed, plan.info.name)
    candidates = list(plan.candidates)
    if len(candidates) > MAX_TRAIN:
        candidates = rng.sample(candidates, MAX_TRAIN)
    position = {p.docid: i for i, p in enumerate(plan.pool)}
    negatives, stats = mine_hard_negatives(
        [c.search_text or c.query for c in candidates],
        [c.known | {c.positive} for c in candidates],
        plan.pool,
        n_negatives=N_NEGATIVES,
        seed=rng.randrange(2**32),
        index=plan.index,
        eligible=plan.eligible,
        fallback_texts=[plan.pool[position[c.positive]].full_text() for c in candidates],
    )
    written = plan.written_as or (lambda i: plan.pool[i])
    examples = [
        TrainExample(
            query_id=f"{plan.info.name}-{n}",
            query=truncate(c.query),
            positives=(written(position[c.positive]),),
            negatives=tuple(written(i) for i in neg),
        )
        for n, (c, neg) in enumerate(zip(candidates, negatives, strict=True))
    ]
    plan.stats = {"examples": len(examples), **stats.to_dict()}
    return examples


# --- writers (official on-disk layouts) --------------------------------------------------------


def write_train(folder: Path, plans: list[TaskPlan], seed: int) -> None:
    infos = []
    for plan in plans:
        log(f"mining hard negatives for {plan.info.name} ({len(plan.candidates)} candidates)")
        examples = realise(plan, seed)
        plan.info.size = write_examples(folder / plan.info.path, examples)
        plan.info.path = str(folder / plan.info.path)
        infos.append(plan.info)
    write_manifest(folder / "tasks.json", infos)


def write_beir_dataset(
    target: Path, corpus: Iterable[tuple[str, str, str]], queries: Sequence[tuple[str, str, Sequence[str]]], readme: str
) -> None:
    """One BEIR dataset folder: corpus (docid, title, text), queries (qid, text, relevant docids; score 1)."""
    write_jsonl(target / "corpus.jsonl.gz", ({"_id": d, "title": ti, "text": t} for d, ti, t in corpus))
    write_jsonl(target / "queries.jsonl", ({"_id": q, "text": t} for q, t, _ in queries))
    rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, _, ds in queries for d in ds]
    write_text_lines(target / "qrels" / "test.tsv", rows)
    atomic_write_text(target / "README.md", readme)


def write_beir(folder: Path, name: str, data: dict, readme: str) -> None:
    write_beir_dataset(folder / "beir" / name, ((d, "", t) for d, t in data["corpus"]), data["queries"], readme)


def write_miracl(folder: Path, data: dict[str, dict], readme: str) -> None:
    for lang, part in data.items():
        target = folder / "miracl" / lang
        write_text_lines(target / f"topics.miracl-v1.0-{lang}-dev.tsv", (f"{q}\t{t}" for q, t, _ in part["topics"]))
        write_text_lines(
            target / f"qrels.miracl-v1.0-{lang}-dev.tsv",
            (f"{q} Q0 {d} 1" for q, _, ds in part["topics"] for d in ds),
        )
        write_jsonl(
            target / "corpus" / "docs-0.jsonl.gz", ({"docid": d, "title": "", "text": t} for d, t in part["corpus"])
        )
    atomic_write_text(folder / "miracl" / "README.md", readme)


def write_mkqa(folder: Path, data: dict, readme: str) -> None:
    target = folder / "mkqa"
    write_jsonl(target / "mkqa.jsonl.gz", data["records"])
    write_jsonl(target / "corpus.jsonl.gz", ({"_id": d, "title": ti, "text": t} for d, ti, t in data["corpus"]))
    atomic_write_text(target / "README.md", readme)


BEIR_README = """# nave-kjv (BEIR layout)

English topical retrieval: {queries} queries are topic/subtopic headings of Nave's Topical Bible
(e.g. "Aaron: Marriage of"); the corpus is {corpus} King James Version verses (`_id` = OSIS verse id);
qrels are Nave's own verse lists ({qrels} judgements, score 1). Whole topics are held out: no topic here
appears in the `topic_verse_nave*` / `related_verse_nave` training tasks. Files: `corpus.jsonl.gz`,
`queries.jsonl`, `qrels/test.tsv`, exactly as BEIR ships them. Public domain. Built by eval/data/build_offline.py.
"""
MIRACL_README = """# MIRACL layout, chatterbot-corpus questions ({langs})

Monolingual retrieval per language: topics are chatterbot-corpus questions, the corpus is the set of distinct
answers of that language (`docid` in MIRACL's `<doc>#<passage>` form), and qrels (TREC, rel 1) link each
question to every answer it has. Files per language: `topics.miracl-v1.0-<lang>-dev.tsv`,
`qrels.miracl-v1.0-<lang>-dev.tsv`, `corpus/docs-0.jsonl.gz`. These languages' chatterbot data is not in any
training task. Sizes: {sizes}. BSD-3-Clause (chatterbot-corpus). Built by eval/data/build_offline.py.
"""
MKQA_README = """# MKQA layout, cross-lingual ({langs} queries, English answers)

{n} questions that chatterbot-corpus ships as parallel translations (same topic file and position in every
language), in the official MKQA record format: `example_id`, `query`, `queries` per language, `answers` per
language (`type`, `text`, `aliases`). `corpus.jsonl.gz` is an English corpus in BEIR layout ({corpus} passages:
every distinct English chatterbot answer plus WordNet glosses as distractors). The official protocol applies:
a query is answered when a top-k passage contains `answers["en"]` text after DPR-style normalisation; only
questions whose answer occurs in 1-10 corpus passages are kept. None of these questions (in any language)
is in a training task. BSD-3-Clause (chatterbot-corpus), WordNet 3.0 license. Built by eval/data/build_offline.py.
"""


def build(out: Path, seed: int) -> dict:
    """Build everything into `out` (`train/`, `benchmarks/`) and return the build report."""
    started = time.time()
    log("reading sources: SWORD modules (mod2imp), WordNet, stdlib, chatterbot-corpus")
    kjv = src.bible_verses("engKJV2006eb")
    rv = src.bible_verses("spaRV1909eb")
    nave = src.nave_queries(list(kjv))
    synsets = src.wordnet_synsets()
    units = src.stdlib_code_units()

    log("choosing evaluation sets")
    beir, held_topics = build_beir_nave(kjv, nave, seed)
    miracl = build_miracl(seed)
    mkqa, held_pairs = build_mkqa(synsets, seed)
    eval_queries = [t for _, t, _ in beir["queries"]]
    eval_queries += [t for part in miracl.values() for _, t, _ in part["topics"]]
    eval_queries += [q for r in mkqa["records"] for q in r["queries"].values()]

    log("planning training tasks")
    plans = [chatterbot_task(lang, folders, held_pairs) for lang, folders in CHATTERBOT_TRAIN.items()]
    plans += [code_task(units), wordnet_task(synsets, seed)]
    bible, alignment = bible_tasks(kjv, rv, nave, held_topics, seed)
    plans += bible
    log(f"decontaminating {sum(len(p.candidates) for p in plans)} candidates against {len(eval_queries)} eval queries")
    dedup = decontaminate(plans, eval_queries)

    with atomic_dir(out / "train") as train_tmp:
        write_train(train_tmp, plans, seed)
    # the manifest stores paths relative to itself, so it stays valid after the rename
    with atomic_dir(out / "benchmarks") as bench_tmp:
        for kept in OTHER_BUILDS:  # built by their own scripts: carried over as they are
            if (out / kept).is_dir():
                shutil.copytree(out / kept, bench_tmp / Path(kept).relative_to("benchmarks"))
        qrels = sum(len(ds) for _, _, ds in beir["queries"])
        write_beir(
            bench_tmp,
            "nave-kjv",
            beir,
            BEIR_README.format(queries=len(beir["queries"]), corpus=len(beir["corpus"]), qrels=qrels),
        )
        sizes = ", ".join(f"{k}: {len(v['topics'])} queries / {len(v['corpus'])} passages" for k, v in miracl.items())
        write_miracl(bench_tmp, miracl, MIRACL_README.format(langs=", ".join(miracl), sizes=sizes))
        write_mkqa(
            bench_tmp,
            mkqa,
            MKQA_README.format(langs=", ".join(MKQA_LANGS), n=len(mkqa["records"]), corpus=len(mkqa["corpus"])),
        )
    return {
        "seed": seed,
        "python": sys.version.split()[0],
        "seconds": round(time.time() - started, 1),
        "bible_alignment": alignment,
        "decontamination": {
            "simhash_max_hamming": SIMHASH_DISTANCE,
            "eval_queries": len(eval_queries),
            "per_task": dedup,
        },
        "mining": {p.info.name: p.stats for p in plans},
        "benchmarks": {
            "beir/nave-kjv": {"queries": len(beir["queries"]), "corpus": len(beir["corpus"])},
            "miracl": {k: {"queries": len(v["topics"]), "corpus": len(v["corpus"])} for k, v in miracl.items()},
            "mkqa": {"queries": len(mkqa["records"]), "languages": list(MKQA_LANGS), "corpus": len(mkqa["corpus"])},
        },
    }


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.parent.name != "__pycache__" and p.suffix != ".py"
    }


def own_files(hashes: dict[str, str]) -> dict[str, str]:
    """The files this script builds: train/ and benchmarks/, less OTHER_BUILDS."""
    return {
        k: v
        for k, v in hashes.items()
        if k.startswith(("train/", "benchmarks/")) and not k.startswith(tuple(f"{b}/" for b in OTHER_BUILDS))
    }


def report_differences(fresh: dict[str, str], bundled: dict[str, str], out: Path) -> int:
    """Print the files whose hashes differ between a fresh build and the bundle; 1 when any do."""
    differ = sorted(k for k in set(fresh) | set(bundled) if fresh.get(k) != bundled.get(k))
    for name in differ:
        print(f"DIFFERS: {name}")
    print(f"{len(fresh)} files rebuilt, {len(differ)} differ from {out}")
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "tdro_suite" / "bundled", help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--report", type=Path, default=HERE / "build_report.json", help="where the build report goes")
    parser.add_argument("--verify", action="store_true", help="rebuild in a temp folder and compare with --out")
    args = parser.parse_args(argv)
    if args.verify:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp), args.seed)
            fresh, bundled = file_hashes(Path(tmp)), file_hashes(args.out)
            return report_differences(fresh, own_files(bundled), args.out)
    report = build(args.out, args.seed)
    report["sha256"] = own_files(file_hashes(args.out))
    atomic_write_json(args.report, report)
    log(f"done in {report['seconds']} s; report at {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Build `bundled:general`, a general-English retrieval benchmark in BEIR layout, for the forgetting check.

Source: the excerpt of the English Wikipedia dump (May 2016: 206 pages, 106 of them articles or lists, not
redirects, from "Anarchism" to "Algorithm") that gensim ships as test data,
    gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2
(pip: the `build-data` extra installs gensim and mwparserfromhell; gensim is never imported, only located).
Wikipedia text is CC BY-SA 3.0 (and GFDL); nothing of it is in any training task.

The task is TREC CAR's (Dietz et al., 2017): a query is an article title and one of its top-level section
headings ("Alaska: History"), its relevant passages are the paragraphs the editors wrote under that
heading, and every paragraph of the same articles is in the corpus. Judgements therefore come from the
articles' structure, not from assessors.

Usage:
    python eval/data/build_general.py              # writes tdro_suite/bundled/benchmarks/general/enwiki-sections
    python eval/data/build_general.py --verify     # rebuild in a temp folder, compare bytes with the bundle

Queries and passages that equal or nearly equal (SimHash + 3-gram Jaccard, build_offline's thresholds) any
query or passage of the bundled training mixture are removed; the counts go to build_general_report.json.
Everything is seeded and written with gzip mtime=0, so the same seed and package versions give the same bytes.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import importlib.metadata
import importlib.util
import re
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build_offline as offline  # noqa: E402  (also puts the repository on sys.path)

from tdro_suite.bundled import ROOT as BUNDLED_ROOT  # noqa: E402
from tdro_suite.bundled import train_dir  # noqa: E402
from tdro_suite.common.errors import DataError  # noqa: E402
from tdro_suite.common.io import atomic_dir, atomic_write_json  # noqa: E402
from tdro_suite.data.dedup import find_contamination  # noqa: E402
from tdro_suite.data.tasks import load_tasks, task_examples  # noqa: E402
from tdro_suite.data.text import normalize_text  # noqa: E402

NAME = "enwiki-sections"
DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
SOURCE_PACKAGES = ("gensim", "mwparserfromhell")
DEFAULT_SEED = 13
MAX_QUERIES = 400
MAX_RELEVANT = 30  # sections with more passages than this are lists of facts more than a topic
MIN_WORDS = 25  # shorter paragraphs are captions, list intros or table remnants
MAX_WORDS = 150  # longer paragraphs are cut into passages at sentence ends
LICENSE = "CC BY-SA 3.0 (English Wikipedia text, also GFDL)"

# sections that hold no prose about the article's subject
SKIPPED_SECTIONS = {
    "see also", "references", "external links", "further reading", "notes", "bibliography", "sources",
    "citations", "footnotes", "gallery", "works cited", "notes and references", "references and notes",
    "primary sources", "secondary sources", "filmography", "discography", "selected works", "works",
    "publications", "books", "awards", "awards and nominations", "honours", "honors",
}
_NS = "{http://www.mediawiki.org/xml/export-0.10/}"
_DISAMBIGUATION = re.compile(r"\{\{\s*(disambig|dab|hndis|geodis|disambiguation)\b", re.I)
_LINK_PREFIX = re.compile(r"^\s*:?\s*([a-z][a-z\- ]{1,20})\s*:", re.I)  # File:, Category:, interwiki (de:) ...
_DROPPED_TAGS = {"ref", "references", "gallery", "math", "timeline", "table", "imagemap", "score", "syntaxhighlight"}
_LIST_MARKUP = {"*", "#", ":", ";"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
# removed before parsing: references and comments the parser leaves as text when their markup is unbalanced
_UNPARSED = re.compile(r"<!--.*?-->|<ref[^<>]*/>|<ref[^<>]*>.*?</ref>", re.S | re.I)
_LEFTOVER_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>")  # <blockquote>, not "< 10" or "R > S"


def log(message: str) -> None:
    print(f"[build-general {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the source -------------------------------------------------------------------------------------


def dump_path() -> Path:
    """The Wikipedia excerpt inside the installed gensim package (located, not imported)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("gensim is not installed: `pip install -e '.[build-data]'` brings the Wikipedia excerpt.")
    path = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data" / DUMP
    if not path.is_file():
        raise DataError(f"{path}: missing from the installed gensim; see eval/data/DATASHEET.md for the version.")
    return path


def source_versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in SOURCE_PACKAGES}


@dataclass
class Article:
    page_id: str
    title: str
    sections: list[tuple[str, list[str]]]  # (top-level heading, "" for the lead; its prose paragraphs)


def read_pages(path: Path) -> list[tuple[str, str, str]]:
    """(page id, title, wikitext) of every main-namespace page that is not a redirect, in dump order."""
    pages = []
    with bz2.open(path) as fh:
        for _, element in ET.iterparse(fh):
            if element.tag != _NS + "page":
                continue
            if element.findtext(_NS + "ns") == "0" and element.find(_NS + "redirect") is None:
                text = element.findtext(f"{_NS}revision/{_NS}text") or ""
                pages.append((element.findtext(_NS + "id") or "", element.findtext(_NS + "title") or "", text))
            element.clear()
    return pages


def _positional(template) -> list[str]:
    return [plain(p.value).strip() for p in template.params if not p.showkey]


def _template(template) -> str:
    """The visible text of the few inline templates that carry prose (units, foreign words, dates)."""
    name = str(template.name).strip().lower()
    args = _positional(template)
    if name in ("convert", "cvt") and len(args) >= 2:
        if len(args) >= 4 and args[1] in ("to", "-", "–", "and", "or"):
            return " ".join(args[:4])
        return f"{args[0]} {args[1]}"
    if name == "as of" and args:
        return ("as of " if template.has("lc") else "As of ") + " ".join(args[:1])
    if name in ("lang", "transl") or name.startswith("lang-"):
        return args[-1] if args else ""
    if name in ("nihongo", "small", "smaller", "nowrap", "nobr", "vanchor", "keypress", "val", "vr", "abbr", "sc",
                "smallcaps", "quote", "nts", "lsj"):
        return args[0] if args else ""
    if name == "frac" and args:
        return "/".join(args)
    if name == "chem":
        return "".join(args)
    if name == "angbr" and args:
        return f"⟨{args[0]}⟩"
    return {"'s": "'s", "nbsp": " ", "ndash": "–", "mdash": "—", "okina": "ʻ", "pipe": "|", "!": "|"}.get(name, "")


def plain(code) -> str:
    """Wikitext as the reader sees it: link and markup text kept; templates, references, files, tables and
    categories left out; list items keep their marker so `paragraphs` can drop them."""
    import mwparserfromhell.nodes as nodes

    out = []
    for node in code.nodes:
        if isinstance(node, nodes.Text):
            out.append(str(node))
        elif isinstance(node, nodes.Wikilink):
            if _LINK_PREFIX.match(str(node.title)):
                continue
            out.append(plain(node.text) if node.text is not None else plain(node.title))
        elif isinstance(node, nodes.ExternalLink):
            out.append(plain(node.title) if node.title is not None else "")
        elif isinstance(node, nodes.Template):
            out.append(_template(node))
        elif isinstance(node, nodes.HTMLEntity):
            out.append(node.normalize())
        elif isinstance(node, nodes.Tag):
            tag = str(node.tag).strip().lower()
            if node.wiki_markup in _LIST_MARKUP:
                out.append(str(node.wiki_markup))
            elif tag == "br":
                out.append(" ")
            elif tag not in _DROPPED_TAGS and node.contents is not None:
                out.append(plain(node.contents))
        # headings, comments and template arguments have no prose
    return "".join(out)


def _tidy_brackets(text: str) -> str:
    """Brackets that removed templates (pronunciations, dates) left empty or with stray separators."""
    text = re.sub(r"\(\s*[,;]+\s*", "(", text)
    text = re.sub(r"\s*[,;]+\s*\)", ")", text)
    return re.sub(r"\s*\(\s*\)", "", text).replace("( ", "(").replace(" )", ")")


def paragraphs(text: str) -> list[str]:
    """Prose paragraphs of at least MIN_WORDS words: blank-line separated, list and table lines dropped."""
    found = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.split("\n")]
        prose = " ".join(line for line in lines if line and line[0] not in "*#:;|{}!=[")
        prose = _LEFTOVER_TAG.sub("", re.sub(r"'{2,}", "", prose))  # bold/italic quotes the parser left
        prose = _tidy_brackets(re.sub(r"\s+", " ", prose))
        prose = re.sub(r"\s+", " ", re.sub(r"\s+([,.;:])", r"\1", prose)).strip()
        if len(prose.split()) >= MIN_WORDS:
            found.append(prose)
    return found


def article_sections(wikitext: str) -> list[tuple[str, list[str]]]:
    """The lead ("") and each top-level section: heading and prose paragraphs (of its subsections too)."""
    import mwparserfromhell

    code = mwparserfromhell.parse(_UNPARSED.sub("", wikitext))
    lead = code.get_sections(include_lead=True, flat=True)[0]
    sections = [("", paragraphs(plain(lead)))]
    for section in code.get_sections(levels=[2]):
        heading = section.filter_headings(recursive=False)[0]
        sections.append((plain(heading.title).strip(), paragraphs(plain(section))))
    return sections


def is_article(title: str, wikitext: str, titles: set[str]) -> bool:
    """Encyclopedia articles only: no disambiguation page, list, or "Economy of X" part of an article X here
    (its paragraphs would be unjudged answers to "X: Economy")."""
    if _DISAMBIGUATION.search(wikitext) or title.startswith("List of") or "(disambiguation)" in title:
        return False
    part_of = re.match(r"^.+ (?:of|in) (.+)$", title)
    return not (part_of and part_of.group(1) in titles)


def read_articles(path: Path) -> tuple[list[Article], dict[str, int]]:
    pages = read_pages(path)
    titles = {title for _, title, _ in pages}
    articles = [
        Article(page_id, title, article_sections(text))
        for page_id, title, text in pages
        if is_article(title, text, titles)
    ]
    return articles, {"pages": len(pages), "articles": len(articles)}


# --- passages and queries --------------------------------------------------------------------------


def split_passage(paragraph: str, max_words: int = MAX_WORDS) -> list[str]:
    """A paragraph, or consecutive runs of its sentences of about equal length when it is longer than max_words."""
    words = len(paragraph.split())
    if words <= max_words:
        return [paragraph]
    parts = -(-words // max_words)
    target = words / parts
    chunks: list[list[str]] = [[]]
    count = 0
    for sentence in _SENTENCE_END.split(paragraph):
        n = len(sentence.split())
        if chunks[-1] and count + n / 2 > target * len(chunks) and len(chunks) < parts:
            chunks.append([])
        chunks[-1].append(sentence)
        count += n
    return [" ".join(c) for c in chunks]


@dataclass
class Collection:
    corpus: list[tuple[str, str, str]]  # (docid, title, text)
    queries: list[tuple[str, str, list[str]]]  # (qid, text, relevant docids)
    stats: dict = field(default_factory=dict)


def candidates(articles: Sequence[Article]) -> Collection:
    """Every passage, and one query per top-level prose section with 1..MAX_RELEVANT passages."""
    corpus: list[tuple[str, str, str]] = []
    queries: list[tuple[str, str, list[str]]] = []
    too_many = 0
    for article in articles:
        n = 0
        for k, (heading, paras) in enumerate(article.sections):
            docids = []
            for paragraph in paras:
                for text in split_passage(paragraph):
                    docids.append(f"{article.page_id}-{n}")
                    corpus.append((docids[-1], article.title, text))
                    n += 1
            if not heading or heading.lower() in SKIPPED_SECTIONS or not docids:
                continue
            if len(docids) > MAX_RELEVANT:
                too_many += 1
                continue
            queries.append((f"{article.page_id}-s{k}", f"{article.title}: {heading}", docids))
    return Collection(corpus, queries, {"sections_over_max_relevant": too_many})


def training_texts() -> list[str]:
    """Every distinct query and passage (text, and title + text) of the bundled training mixture, sorted."""
    texts: set[str] = set()
    for task in load_tasks([train_dir()]):
        for example in task_examples(task):
            texts.add(example.query)
            for passage in (*example.positives, *example.negatives):
                texts.update((passage.text, passage.full_text()))
    return sorted(texts)


def contaminated(texts: Sequence[str], train: Sequence[str]) -> dict[int, dict]:
    """Index → {kind, training text} of each text that equals or nearly equals a training text."""
    hits = find_contamination(
        texts, train, max_distance=offline.SIMHASH_DISTANCE, min_jaccard=offline.MIN_JACCARD, chunk=128
    )
    return {h.train_index: {"kind": h.kind, "jaccard": h.similarity, "training": train[h.eval_index]} for h in hits}


def decontaminate(collection: Collection, train: Sequence[str]) -> dict:
    """Drop queries and passages that duplicate training text; a query left without a relevant passage goes."""
    bad_queries = contaminated([t for _, t, _ in collection.queries], train)
    bad_passages = contaminated([t for _, _, t in collection.corpus], train)
    dropped_docs = {collection.corpus[i][0] for i in bad_passages}
    judged = {d for _, _, ds in collection.queries for d in ds}
    kept_queries = []
    emptied = 0
    for i, (qid, text, docids) in enumerate(collection.queries):
        if i in bad_queries:
            continue
        docids = [d for d in docids if d not in dropped_docs]
        if not docids:
            emptied += 1
            continue
        kept_queries.append((qid, text, docids))

    def counts(hits: dict[int, dict]) -> dict[str, int]:
        return {kind: sum(1 for h in hits.values() if h["kind"] == kind) for kind in ("exact", "near")}

    report = {
        "training_texts": len(train),
        "queries": {"candidates": len(collection.queries), **counts(bad_queries)},
        "passages": {
            "candidates": len(collection.corpus),
            **counts(bad_passages),
            "judged_removed": len(dropped_docs & judged),
            "queries_left_without_relevant": emptied,
        },
        "examples": [
            {"text": texts[i], **hit}
            for texts, hits in (([t for _, t, _ in collection.queries], bad_queries),
                                ([t for _, _, t in collection.corpus], bad_passages))
            for i, hit in sorted(hits.items())
        ][:10],
    }
    collection.queries = kept_queries
    collection.corpus = [p for p in collection.corpus if p[0] not in dropped_docs]
    return report


def sample_queries(collection: Collection, seed: int, max_queries: int = MAX_QUERIES) -> None:
    """At most max_queries queries (no two with the same normalised text), drawn with the seed, in dump order."""
    seen: set[str] = set()
    unique = []
    for query in collection.queries:
        key = normalize_text(query[1])
        if key not in seen:
            seen.add(key)
            unique.append(query)
    if len(unique) > max_queries:
        keep = set(offline._rng(seed, "general-queries").sample(range(len(unique)), max_queries))
        unique = [q for i, q in enumerate(unique) if i in keep]
    collection.queries = unique


README = """# {name} (BEIR layout): general English retrieval

A forgetting check: encyclopedic English prose from a source that no training task uses.

- queries.jsonl: {queries} queries, each an English Wikipedia article title and one of its top-level
  section headings, e.g. "{example}".
- corpus.jsonl.gz: {corpus} passages, every prose paragraph of the {articles} articles (`title` = the article,
  `text` = the paragraph, `_id` = `<page id>-<n>`); paragraphs over {max_words} words are cut at sentence ends
  into passages of about equal length.
- qrels/test.tsv: {qrels} judgements (score 1, {per_query:.1f} per query): the passages written under that
  heading, subsections included (TREC CAR's top-level judgements). They come from the articles' structure,
  not from assessors: a paragraph elsewhere that also fits counts as not relevant.

Source: the excerpt of the English Wikipedia dump (revisions up to May 2016) that gensim {gensim} ships as
test data,
`gensim/test/test_data/{dump}`,
parsed with mwparserfromhell {mwparserfromhell}. Left out: disambiguation pages, lists, articles that are
a section of another article here ("Economy of Angola"), sections without prose ("References",
"See also", ...) and sections of more than {max_relevant} passages. Markup, references, tables, lists and
most templates are removed; the text is otherwise Wikipedia's.

License: {license}
(https://creativecommons.org/licenses/by-sa/3.0/); the authors are the Wikipedia contributors of each
article (its history at https://en.wikipedia.org/wiki/<title>).

Decontaminated against every query and passage of the bundled training mixture (exact and near duplicates
removed: {removed}). Built by eval/data/build_general.py --seed {seed}.
"""


def write_collection(target: Path, collection: Collection, readme: str) -> None:
    offline.write_beir_dataset(target, collection.corpus, collection.queries, readme)


def build(out: Path, seed: int, train: Sequence[str] | None = None) -> dict:
    """Build the benchmark into `out/general/<NAME>` and return the build report. `train`: the texts to
    decontaminate against; default every query and passage of the bundled training mixture."""
    started = time.time()
    path = dump_path()
    versions = source_versions()
    log(f"parsing {path.name} (gensim {versions['gensim']}, mwparserfromhell {versions['mwparserfromhell']})")
    articles, source_stats = read_articles(path)
    collection = candidates(articles)
    log(f"decontaminating {len(collection.queries)} queries and {len(collection.corpus)} passages")
    dedup = decontaminate(collection, training_texts() if train is None else train)
    sample_queries(collection, seed)
    qrels = sum(len(ds) for _, _, ds in collection.queries)
    removed = (
        f"{dedup['queries']['exact']} exact / {dedup['queries']['near']} near queries, "
        f"{dedup['passages']['exact']} exact / {dedup['passages']['near']} near passages"
    )
    readme = README.format(
        name=NAME, queries=len(collection.queries), example=collection.queries[0][1], corpus=len(collection.corpus),
        articles=source_stats["articles"], max_words=MAX_WORDS, qrels=qrels, per_query=qrels / len(collection.queries),
        gensim=versions["gensim"], dump=DUMP, mwparserfromhell=versions["mwparserfromhell"],
        max_relevant=MAX_RELEVANT, license=LICENSE, removed=removed, seed=seed,
    )
    with atomic_dir(out / "general" / NAME) as tmp:
        write_collection(tmp, collection, readme)
    return {
        "seed": seed,
        "python": sys.version.split()[0],
        "packages": versions,
        "source": {"file": DUMP, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), **source_stats},
        "seconds": round(time.time() - started, 1),
        "decontamination": {
            "simhash_max_hamming": offline.SIMHASH_DISTANCE,
            "min_jaccard": offline.MIN_JACCARD,
            **dedup,
        },
        "benchmark": {
            "queries": len(collection.queries),
            "corpus": len(collection.corpus),
            "qrels": qrels,
            "articles": source_stats["articles"],
            "sections_over_max_relevant": collection.stats["sections_over_max_relevant"],
        },
    }


def file_hashes(root: Path) -> dict[str, str]:
    return {k: v for k, v in offline.file_hashes(root).items() if k.startswith(f"general/{NAME}/")}


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=BUNDLED_ROOT / "benchmarks", help="benchmarks folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--report", type=Path, default=HERE / "build_general_report.json", help="build report")
    parser.add_argument("--verify", action="store_true", help="rebuild in a temp folder and compare with --out")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.verify:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp), args.seed)
            return offline.report_differences(file_hashes(Path(tmp)), file_hashes(args.out), args.out)
    report = build(args.out, args.seed)
    report["sha256"] = file_hashes(args.out)
    atomic_write_json(args.report, report)
    log(f"done in {report['seconds']} s; report at {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

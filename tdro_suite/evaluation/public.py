"""The public benchmarks behind `--bench miracl|miracl-hn|mkqa|beir|beir:<name>`: where each comes from, pinned.

Fetching: `datasets.load_dataset(repo, config, split=..., revision=<commit>)` on the MTEB parquet
mirrors, with the revisions MTEB's own task metadata pins (tests/test_eval_public.py checks them
against the installed mteb). Why not mteb's task loaders: they pull in mteb and its model registry
for a handful of `load_dataset` calls, and they do not cover MKQA's answer-match protocol. Why not
the original releases: `miracl/miracl` and `miracl/miracl-corpus` are loading scripts that
`datasets>=4` no longer runs, and BEIR's zips carry no revision. MKQA's questions with answers exist
only in Apple's release (`mkqa.jsonl.gz`, fetched by URL); its corpus is BEIR's NQ (as in BGE-M3's and
the tDRO reference's evaluation), from `mteb/nq`.

Each collection is materialised once under `cache_dir("benchmarks", "public", <bench>, <collection>)`
in the BEIR layout (or the MKQA one) and read back by the ordinary loaders, so a cached benchmark runs
offline. `TDRO_BENCHMARK_MIRROR=<folder>` (or `mirror=`) reads `<folder>/<repo>` instead of the hub and
`<folder>/<url path>` instead of a URL, through the same `load_dataset` / `urlopen` calls: the tests use
it with small replicas in the mirrors' layouts.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tdro_suite.common.errors import DataError
from tdro_suite.common.io import atomic_dir
from tdro_suite.common.paths import cache_dir

MIRROR_ENV = "TDRO_BENCHMARK_MIRROR"
MIRACL_LANGS = ("ar", "bn", "de", "en", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw", "te", "th",
                "yo", "zh")
# Passages per MIRACL corpus (MIRACL paper, Table 2): what a full run encodes.
MIRACL_PASSAGES = {
    "ar": 2_061_414, "bn": 297_265, "de": 15_866_222, "en": 32_893_221, "es": 10_373_953, "fa": 2_207_172,
    "fi": 1_883_509, "fr": 14_636_953, "hi": 506_264, "id": 1_446_315, "ja": 6_953_614, "ko": 1_486_752,
    "ru": 9_543_918, "sw": 131_924, "te": 518_079, "th": 542_166, "yo": 49_043, "zh": 4_934_368,
}
MKQA_URL = "https://github.com/apple/ml-mkqa/raw/main/dataset/mkqa.jsonl.gz"
NQ = ("mteb/nq", "b774495ed302d8c44a3a7ea25c90dbce03968f31")  # BEIR's NQ corpus, 2,681,468 passages
# name → (repo, revision, split), as pinned by mteb's task metadata.
BEIR = {
    "arguana": ("mteb/arguana", "c22ab2a51041ffd869aaddef7af8d8215647e41a", "test"),
    "climate-fever": ("mteb/climate-fever", "47f2ac6acb640fc46020b02a5b59fdda04d39380", "test"),
    "dbpedia-entity": ("mteb/dbpedia", "c0f706b76e590d620bd6618b3ca8efdd34e2d659", "test"),
    "fever": ("mteb/fever", "bea83ef9e8fb933d90a2f1d5515737465d613e12", "test"),
    "fiqa": ("mteb/fiqa", "27a168819829fe9bcd655c2df245fb19452e8e06", "test"),
    "hotpotqa": ("mteb/hotpotqa", "ab518f4d6fcca38d87c25209f94beba119d02014", "test"),
    "msmarco": ("mteb/msmarco", "c5a29a104738b98a9e76336939199e264163d4a0", "dev"),
    "nfcorpus": ("mteb/nfcorpus", "ec0fa4fe99da2ff19ca1214b7966684033a58814", "test"),
    "nq": (*NQ, "test"),
    "quora": ("mteb/quora", "e4e08e0b7dbe3c8700f0daef558ff32256715259", "test"),
    "scidocs": ("mteb/scidocs", "f8c2fcf00f625baaa80f62ec5bd9e1fff3b8ae88", "test"),
    "scifact": ("mteb/scifact", "d56462d0e63a25450459c4f213e49ffdb866f7f9", "test"),
    "trec-covid": ("mteb/trec-covid", "bb9466bac8153a0349341eb1b22e06409e78ef4e", "test"),
    "webis-touche2020": ("mteb/touche2020", "a34f9a33db75fa0cbb21bb5cfc3dae8dc8bec93f", "test"),
}
# cqadupstack: 12 forums, scored one by one and averaged into one BEIR row.
CQADUPSTACK = {
    "android": ("mteb/CQADupstackAndroidRetrieval", "9be4c0e46342e8e3aff577a89b9a1ec9bc6b4af3"),
    "english": ("mteb/cqadupstack-english", "ad9991cb51e31e31e430383c75ffb2885547b5f0"),
    "gaming": ("mteb/cqadupstack-gaming", "4885aa143210c98657558c04aaf3dc47cfb54340"),
    "gis": ("mteb/cqadupstack-gis", "5003b3064772da1887988e05400cf3806fe491f2"),
    "mathematica": ("mteb/cqadupstack-mathematica", "90fceea13679c63fe563ded68f3b6f06e50061de"),
    "physics": ("mteb/cqadupstack-physics", "79531abbd1fb92d06c6d6315a0cbbbf5bb247ea4"),
    "programmers": ("mteb/cqadupstack-programmers", "6184bc1440d2dbc7612be22b50686b8826d22b32"),
    "stats": ("mteb/cqadupstack-stats", "65ac3a16b8e91f9cee4c9828cc7c335575432a2a"),
    "tex": ("mteb/cqadupstack-tex", "46989137a86843e03a6195de44b09deda022eec7"),
    "unix": ("mteb/cqadupstack-unix", "6c6430d3a6d36f8d2a829195bc5dc94d7e063e53"),
    "webmasters": ("mteb/cqadupstack-webmasters", "160c094312a0e1facb97e55eeddb698c0abe3571"),
    "wordpress": ("mteb/cqadupstack-wordpress", "4ffe81d471b1924886b33c7567bfb200e9eec5c4"),
}
# Query instructions of E5-Mistral (Wang et al., 2024, Table 13), which tDRO's evaluation uses too; mteb's
# task prompts carry the same texts (tests/test_eval_public.py compares them).
QA_INSTRUCTION = "Given a question, retrieve Wikipedia passages that answer the question"
BEIR_INSTRUCTIONS = {
    "arguana": "Given a claim, find documents that refute the claim",
    "climate-fever": "Given a claim about climate change, retrieve documents that support or refute the claim",
    "dbpedia-entity": "Given a query, retrieve relevant entity descriptions from DBPedia",
    "fever": "Given a claim, retrieve documents that support or refute the claim",
    "fiqa": "Given a financial question, retrieve user replies that best answer the question",
    "hotpotqa": "Given a multi-hop question, retrieve documents that can help answer the question",
    "msmarco": "Given a web search query, retrieve relevant passages that answer the query",
    "nfcorpus": "Given a question, retrieve relevant documents that best answer the question",
    "nq": QA_INSTRUCTION,
    "quora": "Given a question, retrieve questions that are semantically equivalent to the given question",
    "scidocs": "Given a scientific paper title, retrieve paper abstracts that are cited by the given paper",
    "scifact": "Given a scientific claim, retrieve documents that support or refute the claim",
    "trec-covid": "Given a query on COVID-19, retrieve documents that answer the query",
    "webis-touche2020": "Given a question, retrieve detailed and persuasive arguments that answer the question",
    "cqadupstack": "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates "
                   "to the given question",
}
PUBLIC_NAMES = ("miracl", "miracl-hn", "mkqa", "beir")
BUNDLED_OFFLINE = {"miracl": "bundled:miracl", "miracl-hn": "bundled:miracl", "mkqa": "bundled:mkqa",
                   "beir": "bundled:beir"}


@dataclass(frozen=True)
class HubPart:
    """One `load_dataset(repo, config, split=split, revision=revision)` call."""

    repo: str
    revision: str
    config: str
    split: str

    def describe(self) -> str:
        return f"hf dataset {self.repo}@{self.revision[:12]} config {self.config} split {self.split}"


@dataclass(frozen=True)
class UrlPart:
    url: str

    def describe(self) -> str:
        return f"{self.url} (unpinned: Apple's release has not changed since 2020)"


@dataclass(frozen=True)
class PublicCollection:
    """One evaluation unit of a public benchmark and the parts it is built from."""

    bench: str
    name: str
    kind: str  # "beir" (corpus/queries/qrels) or "mkqa" (records + corpus)
    split: str
    parts: tuple[HubPart | UrlPart, ...]
    language: str | None = None
    size: str = ""
    group: str | None = None  # cqadupstack forums are averaged into this row
    instruction: str | None = None  # applied to models that use instructions (`InstructionFormat`)

    def folder(self, root: Path | None = None) -> Path:
        return (root or cache_dir("benchmarks", "public")) / self.bench / self.name

    def is_cached(self, root: Path | None = None) -> bool:
        return (self.folder(root) / "complete.json").is_file()


def _beir_parts(repo: str, revision: str, split: str, prefix: str = "") -> tuple[HubPart, ...]:
    return (HubPart(repo, revision, f"{prefix}corpus", "corpus" if not prefix else split),
            HubPart(repo, revision, f"{prefix}queries", "queries" if not prefix else split),
            HubPart(repo, revision, f"{prefix}qrels" if prefix else "default", split))


def public_collections(bench: str, names: list[str] | None = None) -> list[PublicCollection]:
    """The collections `bench` stands for (optionally only `names`: languages or BEIR datasets)."""
    out: list[PublicCollection] = []
    if bench in ("miracl", "miracl-hn"):
        repo, revision = (("mteb/MIRACLRetrieval", "9c09abc13478308c27598f350e31d8f06b9b5481") if bench == "miracl"
                          else ("mteb/MIRACLRetrievalHardNegatives", "d7d94fa4b946cec4a27c84653aa0cf6b33f74a3c"))
        for lang in MIRACL_LANGS:
            size = f"{MIRACL_PASSAGES[lang]:,} passages" if bench == "miracl" else "hard-negative pool"
            out.append(PublicCollection(bench, lang, "beir", "dev", _beir_parts(repo, revision, "dev", f"{lang}-"),
                                        language=lang, size=size, instruction=QA_INSTRUCTION))
    elif bench == "mkqa":
        out.append(PublicCollection("mkqa", "mkqa", "mkqa", "test",
                                    (UrlPart(MKQA_URL), HubPart(*NQ, "corpus", "corpus")),
                                    size="10,000 questions x 26 languages; NQ corpus 2,681,468 passages",
                                    instruction=QA_INSTRUCTION))
    elif bench == "beir" or bench.startswith("beir:"):
        wanted = [bench.removeprefix("beir:")] if bench.startswith("beir:") else None
        for name, (repo, revision, split) in BEIR.items():
            out.append(PublicCollection("beir", name, "beir", split, _beir_parts(repo, revision, split),
                                        instruction=BEIR_INSTRUCTIONS[name]))
        for forum, (repo, revision) in CQADUPSTACK.items():
            out.append(PublicCollection("beir", f"cqadupstack-{forum}", "beir", "test",
                                        _beir_parts(repo, revision, "test"), group="cqadupstack",
                                        instruction=BEIR_INSTRUCTIONS["cqadupstack"]))
        if wanted:
            names = [*(names or []), *wanted]
    else:
        raise DataError(f"'{bench}' is not a public benchmark; public: {', '.join(PUBLIC_NAMES)}, beir:<name>.")
    if names:
        keys = {c.name for c in out} | {c.group for c in out if c.group}
        unknown = sorted(set(names) - keys)
        if unknown:
            raise DataError(f"{bench}: no collection {', '.join(unknown)}; known: {', '.join(sorted(keys))}.")
        out = [c for c in out if c.name in names or c.group in names]
    return out


def is_public_beir(name: str) -> bool:
    return name in BEIR or name == "cqadupstack" or name.removeprefix("cqadupstack-") in CQADUPSTACK


def is_public(bench: str) -> bool:
    """`bench` names a public benchmark (or one public BEIR set), fetched and pinned by this module."""
    return bench in PUBLIC_NAMES or (bench.startswith("beir:") and is_public_beir(bench.removeprefix("beir:")))


def wait_until_cached(bench: str, names: list[str] | None = None, *, poll_s: float = 5.0) -> None:
    """Return once every collection of `bench` is cached. torchrun's other processes wait so while the first
    fetches: a fetch can take hours, longer than any collective's timeout (and if the first process fails,
    torchrun stops them all)."""
    collections = public_collections(bench, None if bench == "mkqa" else names)
    while not all(c.is_cached() for c in collections):
        time.sleep(poll_s)


# ---------------------------------------------------------------- offline and the plan
def mirror_root(mirror: str | Path | None = None) -> Path | None:
    value = mirror or os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def hub_offline() -> bool:
    flags = (os.environ.get(v, "").strip().upper() for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(f in ("1", "ON", "YES", "TRUE") for f in flags)


def offline_message(bench: str, missing: list[PublicCollection], reason: str) -> str:
    """What to download, from where, where to put it, and what runs offline instead."""
    repos = sorted({(p.repo, p.revision) for c in missing for p in c.parts if isinstance(p, HubPart)})
    urls = sorted({p.url for c in missing for p in c.parts if isinstance(p, UrlPart)})
    lines = [f"The public benchmark '{bench}' is not cached here and cannot be fetched ({reason})."]
    lines += [f"  download: huggingface.co/datasets/{repo} at revision {rev}" for repo, rev in repos]
    lines += [f"  download: {url}" for url in urls]
    lines.append(
        f"Where the hub is reachable, `tdro-suite eval --bench {bench}` fetches and caches them under "
        f"{cache_dir('benchmarks', 'public') / missing[0].bench}; copy that folder here (same path, or set "
        f"TDRO_CACHE_DIR). "
        f"Or mirror the repositories as folders <mirror>/<repo> (and <mirror>/<url path> for URLs) and set "
        f"{MIRROR_ENV}=<mirror>. Offline, `--bench {BUNDLED_OFFLINE.get(bench, 'bundled:beir')}` runs the bundled "
        f"stand-in."
    )
    return "\n".join(lines)


def plan_lines(bench: str, collections: list[PublicCollection], root: Path | None = None) -> list[str]:
    """One line per collection: cached or what would be fetched (sources, revisions, size)."""
    lines = []
    for c in collections:
        state = f"cached in {c.folder(root)}" if c.is_cached(root) else "to fetch: " + "; ".join(
            p.describe() for p in c.parts)
        size = f" [{c.size}]" if c.size else ""
        lines.append(f"{bench}/{c.name} ({c.split}){size}: {state}")
    return lines


def reachable(timeout: float = 5.0) -> str | None:
    """None when the hub answers; else why not."""
    if hub_offline():
        return "HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set"
    try:
        urllib.request.urlopen("https://huggingface.co/api/datasets/mteb/nq", timeout=timeout).close()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return f"huggingface.co unreachable: {getattr(exc, 'reason', exc)}"
    return None


# ---------------------------------------------------------------- fetching
def _config(part: HubPart, path: str, revision: str | None) -> str:
    """The config mteb's retrieval loader reads for `part`: a repository with a `query` config has its queries
    there, and one without `default` its qrels in `qrels` (some of MTEB's mirrors are laid out so)."""
    from datasets import get_dataset_config_names

    configs = get_dataset_config_names(path, revision=revision)
    if part.config.endswith("queries") and "query" in configs:
        return "query"
    if part.config == "default" and "default" not in configs and "qrels" in configs:
        return "qrels"
    return part.config


def _rows(part: HubPart, mirror: Path | None) -> Iterator[dict[str, Any]]:
    """The rows of one config, config and split chosen as mteb's loader does (the split: the named one, else
    the only one)."""
    from datasets import get_dataset_split_names, load_dataset

    path, revision = (str(mirror / part.repo), None) if mirror is not None else (part.repo, part.revision)
    config = _config(part, path, revision)
    splits = get_dataset_split_names(path, config, revision=revision)
    if part.split not in splits and len(splits) != 1:
        raise DataError(f"{part.describe()}: no split '{part.split}'; splits: {', '.join(splits)}.")
    split = part.split if part.split in splits else splits[0]
    yield from load_dataset(path, config, split=split, revision=revision)


def _url(part: UrlPart, mirror: Path | None) -> str:
    if mirror is None:
        return part.url
    return (mirror / urllib.parse.urlparse(part.url).path.lstrip("/")).resolve().as_uri()


def _write_jsonl_gz(path: Path, rows: Iterator[dict[str, Any]], fields: tuple[str, ...], label: str) -> int:
    """Write `fields` of `rows` (from `load_dataset`, which shows its own download bars) as BEIR JSON lines,
    counting the rows written on a spinner (MIRACL-en: 32.9M)."""
    from tdro_suite.data.arrow import row_progress

    count = 0
    with gzip.open(path, "wt", encoding="utf-8") as out, row_progress(f"writing {label} {path.name}") as bar:
        for row in rows:
            record = {**row, "_id": row.get("_id", row.get("id"))}  # mteb's newer mirrors name it `id`
            out.write(json.dumps({f: ("" if record.get(f) is None else str(record[f])) for f in fields},
                                 ensure_ascii=False) + "\n")
            count += 1
            if count % 10_000 == 0:
                bar(10_000)
    return count


def _materialise(c: PublicCollection, tmp: Path, mirror: Path | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    hub = [p for p in c.parts if isinstance(p, HubPart)]
    if c.kind == "mkqa":
        (url_part,) = [p for p in c.parts if isinstance(p, UrlPart)]
        with urllib.request.urlopen(_url(url_part, mirror), timeout=60) as response, \
                open(tmp / "mkqa.jsonl.gz", "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
        counts["corpus"] = _write_jsonl_gz(tmp / "corpus.jsonl.gz", _rows(hub[0], mirror), ("_id", "title", "text"),
                                           f"{c.bench}/{c.name}")
        return counts
    corpus, queries, qrels = hub
    label = f"{c.bench}/{c.name}"
    counts["corpus"] = _write_jsonl_gz(tmp / "corpus.jsonl.gz", _rows(corpus, mirror), ("_id", "title", "text"), label)
    counts["queries"] = _write_jsonl_gz(tmp / "queries.jsonl.gz", _rows(queries, mirror), ("_id", "text"), label)
    (tmp / "qrels").mkdir()
    with open(tmp / "qrels" / f"{c.split}.tsv", "w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        counts["qrels"] = 0
        for row in _rows(qrels, mirror):
            out.write(f"{row['query-id']}\t{row['corpus-id']}\t{int(row['score'])}\n")
            counts["qrels"] += 1
    return counts


def fetch_public(bench: str, names: list[str] | None = None, *, root: Path | None = None,
                 mirror: str | Path | None = None) -> list[tuple[PublicCollection, Path]]:
    """Local folders of `bench`'s collections, fetching (once) the ones not cached.

    Offline (HF_HUB_OFFLINE, or the hub unreachable; no mirror) with something missing fails at once,
    before any download, with `offline_message`; a failed download fails with the same message and reason.
    """
    collections = public_collections(bench, names)
    source = mirror_root(mirror)
    missing = [c for c in collections if not c.is_cached(root)]
    if missing and source is None:  # one quick probe, not the hub client's minute of retries
        reason = reachable()
        if reason:
            raise DataError(offline_message(bench, missing, reason))
    for c in missing:
        try:
            with atomic_dir(c.folder(root)) as tmp:
                counts = _materialise(c, Path(tmp), source)
                (Path(tmp) / "complete.json").write_text(json.dumps(
                    {"parts": [p.describe() for p in c.parts], "counts": counts}, indent=2))
        except DataError:
            raise
        except Exception as exc:  # no network, unknown repo, bad mirror: one paragraph, no traceback
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            raise DataError(offline_message(bench, [c], reason)) from None
    return [(c, c.folder(root)) for c in collections]

"""Planted broken tasks for the noisy-mixture experiment (issue 18, "tDRO as a data cleaner").

Writes, reproducibly from the bundled training data, a data folder with the 13 bundled tasks (copied, so
the folder stands alone) plus three tasks that teach nothing useful, and a `tasks.json` listing all 16:

- `shuffled_<task>`: a copy of a useful task whose positives are shuffled across queries; no query keeps
  its own positive (nor another with the same text): real-looking texts, wrong labels.
- `random_pairs`: a passage as the query, another random passage as its positive, both drawn from the
  bundled tasks' passages: no relation at all.
- `trivial_copy`: bundled queries whose positive is the query itself: solved by string identity, so it
  teaches nothing about relevance.

Each has the real tasks' shape (one positive, 7 hard negatives; 1,000 examples like the larger bundled
tasks) so only its content gives it away. Same seed, same bytes (`data.writer` writes gzip with mtime 0).

    .venv/bin/python eval/experiments/planted_tasks.py OUT [--seed 0]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from tdro_suite.data.tasks import MANIFEST_NAME, load_task_examples, load_tasks, write_manifest
from tdro_suite.data.types import Passage, TaskInfo, TrainExample
from tdro_suite.data.writer import write_examples

SHUFFLE_SOURCE = "topic_verse_nave"  # kept by every tDRO top-70% selection of the 3-seed comparison
SIZE = 1000
NEGATIVES = 7
PLANTED_DOMAIN = "planted noise"
RANDOM_PAIRS, TRIVIAL_COPY = "random_pairs", "trivial_copy"


def shuffled_name(source: str = SHUFFLE_SOURCE) -> str:
    return f"shuffled_{source}"


def planted_names(source: str = SHUFFLE_SOURCE) -> list[str]:
    """The planted tasks' names, in manifest order (what the oracle condition leaves out)."""
    return [shuffled_name(source), RANDOM_PAIRS, TRIVIAL_COPY]


def _rng(seed: int, part: int) -> np.random.Generator:
    """One generator per planted task, so each is reproducible on its own."""
    return np.random.default_rng([seed, part])


def derangement(keys: Sequence[str], rng: np.random.Generator) -> list[int]:
    """A permutation π with keys[π[i]] != keys[i] for every i: a random cyclic shift, then each clash
    swapped with a random partner where neither side clashes. Needs every key on fewer than half the items."""
    n = len(keys)
    if n < 2 or 2 * max(Counter(keys).values()) >= n:
        raise ValueError("a derangement by key needs every key on fewer than half of at least 2 items")
    order = rng.permutation(n)
    target = [0] * n
    for j in range(n):
        target[order[j]] = int(order[(j + 1) % n])
    for i in range(n):
        while keys[target[i]] == keys[i]:
            j = int(rng.integers(n))
            if keys[target[j]] != keys[i] and keys[target[i]] != keys[j]:
                target[i], target[j] = target[j], target[i]
    return target


def shuffled_task(examples: Sequence[TrainExample], name: str, seed: int) -> list[TrainExample]:
    """The examples with each positive moved to another query (by text, never its own); hard negatives
    equal to the new positive are dropped."""
    keys = [e.positives[0].full_text() for e in examples]
    target = derangement(keys, _rng(seed, 1))
    out = []
    for i, example in enumerate(examples):
        positive = examples[target[i]].positives[0]
        negatives = tuple(n for n in example.negatives if n.full_text() != positive.full_text())
        out.append(TrainExample(f"{name}-{i}", example.query, (positive,), negatives))
    return out


def passage_pool(tasks: Sequence[Sequence[TrainExample]]) -> list[Passage]:
    """Every distinct positive passage of the given tasks (by text), in task and file order."""
    seen: dict[str, Passage] = {}
    for examples in tasks:
        for example in examples:
            for passage in example.positives:
                seen.setdefault(passage.full_text(), passage)
    return list(seen.values())


def random_pairs(pool: Sequence[Passage], size: int, seed: int) -> list[TrainExample]:
    """Query, positive and negatives all distinct passages drawn at random from `pool`."""
    rng = _rng(seed, 2)
    out = []
    for i in range(size):
        query, positive, *negatives = (pool[int(k)] for k in rng.choice(len(pool), 2 + NEGATIVES, replace=False))
        out.append(TrainExample(f"{RANDOM_PAIRS}-{i}", query.full_text(), (positive,), tuple(negatives)))
    return out


def trivial_copy(tasks: Sequence[Sequence[TrainExample]], size: int, seed: int) -> list[TrainExample]:
    """`size` examples drawn from all tasks, each query's positive replaced by the query itself."""
    everything = [e for examples in tasks for e in examples]
    out = []
    for i, k in enumerate(_rng(seed, 3).choice(len(everything), size, replace=False)):
        example = everything[int(k)]
        positive = Passage(f"{TRIVIAL_COPY}-d{i}", example.query)
        negatives = tuple(n for n in example.negatives if n.full_text() != example.query)
        out.append(TrainExample(f"{TRIVIAL_COPY}-{i}", example.query, (positive,), negatives))
    return out


def _planted_info(name: str, path: Path, size: int, how: str, template: TaskInfo) -> TaskInfo:
    """The manifest entry: `template`'s instruction, languages and symmetry, marked as planted."""
    return replace(template, name=name, path=str(path), size=size, domain=PLANTED_DOMAIN,
                   source=f"planted by eval/experiments/planted_tasks.py: {how}")


def write_noisy_mixture(
    out: Path, *, seed: int = 0, size: int = SIZE, shuffle_source: str = SHUFFLE_SOURCE, data: Path | None = None,
) -> Path:
    """Copy the bundled tasks (or those of `data`) into `out`, add the three planted tasks, write
    `out/tasks.json`; returns its path. Rewriting with the same arguments gives the same bytes."""
    from tdro_suite.bundled import train_dir

    out.mkdir(parents=True, exist_ok=True)
    real = load_tasks([data or train_dir()])
    examples = {t.name: load_task_examples(t) for t in real}
    if shuffle_source not in examples:
        raise ValueError(f"no task '{shuffle_source}' to shuffle; tasks: {', '.join(examples)}")
    copied = []
    for task in real:
        target = out / Path(task.path).name
        shutil.copyfile(task.path, target)
        copied.append(replace(task, path=str(target)))
    languages = sorted({lang for t in real for lang in t.languages})
    generic = TaskInfo("", "", instruction="Given a text, retrieve a text that is relevant to it", languages=languages,
                       license="that of the bundled tasks it is drawn from (eval/data/DATASHEET.md)")
    source = next(t for t in real if t.name == shuffle_source)
    planted = {
        shuffled_name(shuffle_source): (shuffled_task(examples[shuffle_source], shuffled_name(shuffle_source), seed),
                                        f"{shuffle_source} with positives shuffled across queries", source),
        RANDOM_PAIRS: (random_pairs(passage_pool(list(examples.values())), size, seed),
                       "random passage pairs from the bundled tasks", generic),
        TRIVIAL_COPY: (trivial_copy(list(examples.values()), size, seed),
                       "bundled queries whose positive is the query itself", generic),
    }
    infos = []
    for name, (rows, how, template) in planted.items():
        path = out / f"{name}.jsonl.gz"
        write_examples(path, rows)
        infos.append(_planted_info(name, path, len(rows), how, template))
    manifest = out / MANIFEST_NAME
    write_manifest(manifest, copied + infos)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (the 16 task files and tasks.json)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=SIZE, help="examples of random_pairs and trivial_copy")
    parser.add_argument("--shuffle-source", default=SHUFFLE_SOURCE, help="the bundled task to shuffle")
    args = parser.parse_args(argv)
    manifest = write_noisy_mixture(args.out, seed=args.seed, size=args.size, shuffle_source=args.shuffle_source)
    print(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

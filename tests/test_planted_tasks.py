"""eval/experiments/planted_tasks.py (issue 18): the planted broken tasks are the same bytes for a seed,
broken the way they claim (no shuffled query keeps its positive, random pairs share nothing, trivial
positives repeat the query), and the 16-task manifest loads through the real task-loading code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from experiment_modules import load_experiment

from tdro_suite.bundled import train_dir
from tdro_suite.data.tasks import count_task_examples, load_task_examples, load_tasks, training_tasks

pt = load_experiment("planted_tasks")


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pt.write_noisy_mixture(tmp_path_factory.mktemp("noisy") / "data", seed=0)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_other_seed_other_tasks(noisy: Path, tmp_path: Path) -> None:
    again = pt.write_noisy_mixture(tmp_path / "again", seed=0)
    assert _files(again.parent) == _files(noisy.parent)
    other = _files(pt.write_noisy_mixture(tmp_path / "other", seed=1).parent)
    for name in pt.planted_names():
        assert other[f"{name}.jsonl.gz"] != _files(noisy.parent)[f"{name}.jsonl.gz"]
    assert other["topic_verse_nave.jsonl.gz"] == (train_dir() / "topic_verse_nave.jsonl.gz").read_bytes()


def test_the_manifest_lists_the_bundled_and_planted_tasks_and_loads(noisy: Path) -> None:
    bundled = [t.name for t in load_tasks([train_dir()])]
    for tasks in (load_tasks([noisy.parent]), training_tasks([str(noisy)])):
        assert [t.name for t in tasks] == bundled + pt.planted_names()
        assert all(t.size == count_task_examples(t) for t in tasks)
    planted = {t.name: t for t in load_tasks([noisy])[len(bundled):]}
    assert {t.domain for t in planted.values()} == {pt.PLANTED_DOMAIN}
    assert [t.size for t in planted.values()] == [1000, 1000, 1000]  # like the larger bundled tasks


def test_planted_tasks_pass_the_training_loaders(noisy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Arrow conversion finetune reads and tDRO's loader (which demands hard negatives) accept them."""
    from tdro_suite.dro.batches import load_task_data

    monkeypatch.setenv("TDRO_CACHE_DIR", str(tmp_path / "cache"))
    planted = [t for t in load_tasks([noisy]) if t.name in pt.planted_names()]
    data = load_task_data(planted, use_instructions=False)
    assert [len(d.examples) for d in data] == [1000, 1000, 1000]
    assert all(len(e.negatives) >= 1 for d in data for e in d.examples)


def test_no_shuffled_query_keeps_its_positive(noisy: Path) -> None:
    tasks = {t.name: t for t in load_tasks([noisy])}
    source = load_task_examples(tasks[pt.SHUFFLE_SOURCE])
    shuffled = load_task_examples(tasks[pt.shuffled_name()])
    assert [e.query for e in shuffled] == [e.query for e in source]
    assert all(s.positives[0].full_text() != o.positives[0].full_text() for s, o in zip(shuffled, source, strict=True))
    # every positive is still used: the same texts, moved
    assert sorted(e.positives[0].full_text() for e in shuffled) == sorted(e.positives[0].full_text() for e in source)


def test_random_pairs_and_trivial_copies(noisy: Path) -> None:
    tasks = {t.name: t for t in load_tasks([noisy])}
    pairs = load_task_examples(tasks[pt.RANDOM_PAIRS])
    assert all(e.query != e.positives[0].full_text() and len(e.negatives) == pt.NEGATIVES for e in pairs)
    assert len({e.query for e in pairs}) > 900  # drawn at random from ~10k passages, not one text over and over
    trivial = load_task_examples(tasks[pt.TRIVIAL_COPY])
    assert all(e.positives[0].text == e.query and e.negatives for e in trivial)


def test_derangement_avoids_equal_keys() -> None:
    keys = ["a", "a", "b", "c", "d", "a", "e"]
    for seed in range(20):
        target = pt.derangement(keys, np.random.default_rng(seed))
        assert sorted(target) == list(range(len(keys)))
        assert all(keys[t] != keys[i] for i, t in enumerate(target))
    with pytest.raises(ValueError, match="fewer than half"):
        pt.derangement(["a", "a", "b", "c"], np.random.default_rng(0))

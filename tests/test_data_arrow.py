"""Arrow-backed tasks: converted once, memory-mapped, and drawn exactly like the in-memory lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tdro_suite.bundled import train_dir
from tdro_suite.common.errors import DataError
from tdro_suite.data import arrow
from tdro_suite.data.arrow import ArrowExamples, arrow_task_examples, sample_rows
from tdro_suite.data.tasks import load_task_examples, load_tasks, task_examples
from tdro_suite.data.types import TaskInfo
from tdro_suite.dro.batches import TaskData, draw_global_batch, load_task_data
from tdro_suite.train.batching import global_text_groups, pick_passages
from tdro_suite.train.sampler import HomogeneousBatchSampler


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TDRO_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="module")
def bundled() -> list[TaskInfo]:
    return load_tasks([train_dir()])


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(n: int, negatives: int = 1) -> list[dict]:
    return [
        {
            "query_id": f"q{i}",
            "query": f"query {i}",
            "positive_passages": [{"docid": f"p{i}", "title": f"t{i}", "text": f"pos {i}"}],
            "negative_passages": [{"docid": f"n{i}.{j}", "text": f"neg {i} {j}"} for j in range(negatives)],
        }
        for i in range(n)
    ]


def test_every_bundled_example_reads_back_equal(bundled: list[TaskInfo]) -> None:
    for task in bundled:
        old = load_task_examples(task)
        new = task_examples(task)
        assert isinstance(new, ArrowExamples) and len(new) == len(old)
        assert list(new) == old, task.name
        assert list(new.negative_counts()) == [len(e.negatives) for e in old]


def test_tdro_batches_equal_the_in_memory_loader(bundled: list[TaskInfo]) -> None:
    new = load_task_data(bundled, use_instructions=True)
    old = [TaskData(t.info, tuple(load_task_examples(t.info)), t.prompts) for t in new]
    for step in range(4):
        kwargs = {"batch_size": 26, "hard_negatives": 3, "seed": 7}
        assert draw_global_batch(new, step, **kwargs) == draw_global_batch(old, step, **kwargs)


def test_finetune_batches_equal_the_in_memory_loader(bundled: list[TaskInfo]) -> None:
    new = [task_examples(t) for t in bundled]
    old = [load_task_examples(t) for t in bundled]
    sampler = HomogeneousBatchSampler([len(e) for e in new], [1.0] * len(new), 16, seed=3)
    for _ in range(6):
        batch = sampler.next_batch()
        task = bundled[batch.task]
        a = global_text_groups(batch, new[batch.task], task, 7, seed=3)
        b = global_text_groups(batch, old[batch.task], task, 7, seed=3)
        assert a == b


def test_converted_once_then_mapped_and_reconverted_when_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = TaskInfo(name="t", path=str(_write(tmp_path / "t.jsonl", _rows(5))))
    first = task_examples(task)
    assert len(first) == 5 and first[-1].query == "query 4" and first[1:3][0].query_id == "q1"
    assert len(list(first.path.parent.glob("*.arrow"))) == 1

    def no_conversion(*args: object, **kwargs: object) -> int:
        raise AssertionError("converted again")

    monkeypatch.setattr(arrow, "convert_task", no_conversion)
    assert list(task_examples(task)) == list(first)  # mapped, not converted
    monkeypatch.undo()
    monkeypatch.setenv("TDRO_CACHE_DIR", str(first.path.parent.parent))
    _write(tmp_path / "t.jsonl", _rows(6))
    assert len(task_examples(task)) == 6  # other bytes, other key


def test_a_bad_line_fails_with_file_and_line_and_caches_nothing(tmp_path: Path, _cache: Path) -> None:
    rows = _rows(3)
    rows[1]["positive_passages"] = []
    task = TaskInfo(name="bad", path=str(_write(tmp_path / "bad.jsonl", rows)))
    with pytest.raises(DataError, match=r"bad\.jsonl:2.*positive_passages"):
        task_examples(task)
    assert not list(_cache.rglob("*.arrow")) and not list(_cache.rglob("*.tmp"))


def test_a_cap_is_a_seeded_sample_in_file_order(tmp_path: Path) -> None:
    task = TaskInfo(name="big", path=str(_write(tmp_path / "big.jsonl", _rows(50))))
    a = arrow_task_examples(task, limit=10, seed=1)
    b = arrow_task_examples(task, limit=10, seed=1)
    c = arrow_task_examples(task, limit=10, seed=2)
    ids = [e.query_id for e in a]
    assert ids == [e.query_id for e in b] and ids != [e.query_id for e in c]
    assert len(set(ids)) == 10 and ids != [f"q{i}" for i in range(10)]  # not the first 10
    assert [int(i[1:]) for i in ids] == sorted(int(i[1:]) for i in ids)
    assert sample_rows(50, None, 0) is None and sample_rows(50, 50, 0) is None
    assert list(a.query_ids()) == ids


def test_borrowed_negatives_match_without_decoding_the_task(tmp_path: Path) -> None:
    rows = _rows(12, negatives=0)
    for i in (3, 7, 8):  # one query with several rows: none of them lends to it
        rows[i]["query_id"] = "q3"
    task = TaskInfo(name="bare", path=str(_write(tmp_path / "bare.jsonl", rows)))
    new, old = task_examples(task), load_task_examples(task)
    sampled = arrow_task_examples(task, limit=9, seed=1)
    kept = [old[i] for i in sample_rows(len(old), 9, 1)]
    for i in range(12):
        a = pick_passages(new[i], 3, np.random.default_rng(i), new)
        assert a == pick_passages(old[i], 3, np.random.default_rng(i), old)
        if new[i].query_id == "q3":
            assert not {p.docid for p in a[1:]} & {"p3", "p7", "p8"}
    for i in range(9):
        assert pick_passages(sampled[i], 3, np.random.default_rng(i), sampled) == pick_passages(
            kept[i], 3, np.random.default_rng(i), kept)
    alone = TaskInfo(name="alone", path=str(_write(tmp_path / "alone.jsonl", _rows(1, negatives=0))))
    one, one_old = task_examples(alone), load_task_examples(alone)  # nobody else: it borrows its own positive
    assert pick_passages(one[0], 2, np.random.default_rng(0), one) == pick_passages(
        one_old[0], 2, np.random.default_rng(0), one_old)


def test_the_source_hash_is_read_once_per_path_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = TaskInfo(name="t", path=str(_write(tmp_path / "t.jsonl", _rows(4))))
    task_examples(task)
    calls: list[str] = []
    monkeypatch.setattr(arrow, "file_digest", lambda path: calls.append(str(path)) or "x")
    assert len(task_examples(task)) == 4 and calls == []  # unchanged: the remembered digest
    _write(tmp_path / "t.jsonl", _rows(7))  # new size and mtime: hashed again
    monkeypatch.undo()
    monkeypatch.setenv("TDRO_CACHE_DIR", str(tmp_path / "cache"))
    assert len(task_examples(task)) == 7

"""Training sources beyond Tevatron JSON-lines (issue 14): parquet files, `save_to_disk` folders and
`hf:NAME[:SUBSET][@SPLIT]` (a local folder in a hub repository's layout stands in for the hub and is read
through the same `load_dataset` call), FlagEmbedding / sentence-transformers columns and explicit column
mappings, validation errors naming source:row:field, one Arrow conversion per source, and the offline
message for a hub dataset that is not here."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tdro_suite.common.errors import DataError
from tdro_suite.data.arrow import ArrowExamples, cached_arrow_path
from tdro_suite.data.reader import InvalidReport
from tdro_suite.data.sources import parse_hub_spec, text_docid
from tdro_suite.data.tasks import (
    count_task_examples,
    iter_task_examples,
    load_tasks,
    read_manifest,
    task_examples,
    write_manifest,
)
from tdro_suite.data.types import TaskInfo


def _flag_rows(n: int, offset: int = 0) -> list[dict]:
    """FlagEmbedding's training format: query, pos and neg as lists of strings (no ids)."""
    return [{"query": f"question {i}", "pos": [f"answer {i}"], "neg": [f"other {i}", "shared negative"]}
            for i in range(offset, offset + n)]


def _tevatron_rows(n: int) -> list[dict]:
    return [{"query_id": f"q{i}", "query": f"question {i}",
             "positive_passages": [{"docid": f"d{i}", "title": "", "text": f"answer {i}"}],
             "negative_passages": [{"docid": f"n{i}", "title": "t", "text": f"other {i}"}]} for i in range(n)]


def _parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TDRO_CACHE_DIR", str(tmp_path / "cache"))


def test_parquet_with_flagembedding_columns(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "flag.parquet", _flag_rows(5))
    [task] = load_tasks([path])
    assert task.name == "flag" and count_task_examples(task) == 5  # from the parquet footer
    examples = task_examples(task)
    assert isinstance(examples, ArrowExamples) and len(examples) == 5
    first = examples[0]
    assert first.query_id == "1" and first.query == "question 0"
    assert first.positives[0].text == "answer 0" and first.positives[0].docid == text_docid("answer 0")
    # the same text is the same passage in every row
    assert examples[1].negatives[1].docid == first.negatives[1].docid == text_docid("shared negative")
    # a folder of parquet files: one task per file, like JSON-lines
    _parquet(tmp_path / "folder" / "a.parquet", _flag_rows(2))
    _parquet(tmp_path / "folder" / "b.parquet", _flag_rows(3))
    assert [(t.name, count_task_examples(t)) for t in load_tasks([tmp_path / "folder"])] == [("a", 2), ("b", 3)]


def test_save_to_disk_folder_and_dataset_dict(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(_tevatron_rows(4)).save_to_disk(str(tmp_path / "msmarco"))
    [task] = load_tasks([tmp_path / "msmarco"])
    assert task.name == "msmarco" and count_task_examples(task) == 4
    assert [e.positives[0].docid for e in task_examples(task)] == ["d0", "d1", "d2", "d3"]
    assert task_examples(task)[2].negatives[0].title == "t"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(_tevatron_rows(2))}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match=r"saved DatasetDict; give one split's folder \(train\)"):
        load_tasks([tmp_path / "dd"])
    assert count_task_examples(load_tasks([tmp_path / "dd" / "train"])[0]) == 2
    # a manifest may point at a saved folder
    write_manifest(tmp_path / "tasks.json", [TaskInfo("ms", str(tmp_path / "msmarco"), instruction="Find it")])
    assert read_manifest(tmp_path / "tasks.json")[0].path == str((tmp_path / "msmarco").resolve())


def _hub_layout(root: Path) -> Path:
    """A dataset repository as on the hub: two subsets (configs in README.md's YAML), parquet shards."""
    _parquet(root / "agnews" / "train-00000-of-00002.parquet", _flag_rows(3))
    _parquet(root / "agnews" / "train-00001-of-00002.parquet", _flag_rows(2, offset=3))
    _parquet(root / "quora" / "train-00000-of-00001.parquet",
             [{"anchor": f"how {i}?", "positive": f"how to {i}", "negative": f"why {i}"} for i in range(4)])
    (root / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: agnews\n  data_files:\n  - split: train\n    path: agnews/train-*.parquet\n"
        "- config_name: quora\n  data_files:\n  - split: train\n    path: quora/train-*.parquet\n"
        "---\n# finetune data\n"
    )
    return root


def test_hub_layout_subsets_splits_and_sentence_transformers_columns(tmp_path: Path) -> None:
    hub = _hub_layout(tmp_path / "finetune_data")
    assert parse_hub_spec(f"hf:{hub}:agnews@train").subset == "agnews"
    agnews, quora = load_tasks([f"hf:{hub}:agnews@train", f"hf:{hub}:quora"])
    assert (agnews.name, quora.name) == ("agnews", "quora")
    assert count_task_examples(agnews) is None  # a hub dataset's size is known once it is here
    assert [e.query for e in task_examples(agnews)] == [f"question {i}" for i in range(5)]
    q = task_examples(quora)
    assert [(e.query, e.positives[0].text, e.negatives[0].text) for e in q][:1] == [("how 0?", "how to 0", "why 0")]
    with pytest.raises(DataError, match="expected hf:NAME"):
        load_tasks([f"hf:{hub}:@train"])


def test_manifest_column_mapping_and_data_files(tmp_path: Path) -> None:
    hub = _hub_layout(tmp_path / "repo")
    _parquet(hub / "custom" / "part.parquet",
             [{"id": f"x{i}", "question": f"q {i}", "answers": [f"a {i}"], "hard": [f"h {i}"]} for i in range(3)])
    manifest = tmp_path / "tasks.json"
    manifest.write_text(json.dumps([{
        "name": "custom", "path": f"hf:{hub}@train", "data_files": ["custom/*.parquet"],
        "columns": {"query_id": "id", "query": "question", "positives": "answers", "negatives": "hard"},
    }]))
    [task] = load_tasks([manifest])
    assert task.columns["query"] == "question" and task.data_files == ["custom/*.parquet"]
    examples = task_examples(task)
    first = examples[0]
    assert (first.query_id, first.query) == ("x0", "q 0")
    assert (first.positives[0].text, first.negatives[0].text) == ("a 0", "h 0")
    # the mapping is part of the cache key: another mapping converts again
    other = TaskInfo("custom", task.path, columns={**task.columns, "negatives": "answers"}, data_files=task.data_files)
    assert cached_arrow_path(other) != cached_arrow_path(task)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "c", "path": f"hf:{hub}", "columns": {"answer": "a"}}]))
    with pytest.raises(DataError, match=r"task #1: 'columns' maps unknown field\(s\) answer"):
        load_tasks([bad])
    # written manifests carry the new fields only when set: older manifests keep their bytes
    write_manifest(tmp_path / "out.json", [task, TaskInfo("plain", str(tmp_path / "flag.parquet"))])
    written = json.loads((tmp_path / "out.json").read_text())
    assert "columns" in written[0] and "columns" not in written[1] and "data_files" not in written[1]


def test_bad_rows_name_source_row_and_field(tmp_path: Path) -> None:
    rows = _flag_rows(3)
    rows[1]["pos"] = []
    path = _parquet(tmp_path / "bad.parquet", rows)
    [task] = load_tasks([path])
    with pytest.raises(DataError, match=r"bad\.parquet:2: field 'positive_passages': is empty"):
        list(iter_task_examples(task))
    report = InvalidReport()
    assert len(list(iter_task_examples(task, skip_invalid=True, report=report))) == 2
    assert report.counts == {"empty_positives": 1}
    missing = _parquet(tmp_path / "nopos.parquet", [{"query": "q", "answer": "a"}])
    with pytest.raises(DataError, match=r"nopos\.parquet:1: field 'positive_passages': is missing"):
        list(iter_task_examples(load_tasks([missing])[0]))
    with pytest.raises(DataError, match="not a readable parquet file"):
        (tmp_path / "junk.parquet").write_text("not parquet")
        count_task_examples(load_tasks([tmp_path / "junk.parquet"])[0])


def test_each_source_converts_once(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(_tevatron_rows(3)).save_to_disk(str(tmp_path / "saved"))
    for source in (_parquet(tmp_path / "p.parquet", _flag_rows(3)), tmp_path / "saved"):
        [task] = load_tasks([source])
        path = task_examples(task).path
        stamp = path.stat().st_mtime_ns
        assert task_examples(task).path == path and path.stat().st_mtime_ns == stamp


def test_offline_hub_source_says_what_to_download(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    [task] = load_tasks(["hf:tdro-llm/finetune_data:agnews@train"])
    with pytest.raises(DataError) as info:
        task_examples(task)
    message = str(info.value)
    assert "not in the local Hugging Face cache" in message
    assert "huggingface-cli download tdro-llm/finetune_data --repo-type dataset --local-dir DIR" in message
    assert "hf:DIR:agnews@train" in message


def test_jsonl_in_other_layouts_is_mapped_line_by_line(tmp_path: Path) -> None:
    flag = tmp_path / "flag.jsonl"
    flag.write_text("".join(json.dumps(r) + "\n" for r in _flag_rows(3)))
    [task] = load_tasks([flag])
    examples = task_examples(task)
    assert [(e.query_id, e.query, e.positives[0].docid) for e in examples] == [
        (str(i + 1), f"question {i}", text_docid(f"answer {i}")) for i in range(3)]
    custom = tmp_path / "custom.jsonl"
    custom.write_text(json.dumps({"q": "question", "answers": ["a"]}) + "\n" + json.dumps({"q": "other"}) + "\n")
    mapped = TaskInfo("custom", str(custom), columns={"query": "q", "positives": "answers"})
    with pytest.raises(DataError, match=r"custom\.jsonl:2: field 'answers': is missing"):
        list(iter_task_examples(mapped))
    report = InvalidReport()
    assert [e.positives[0].text for e in iter_task_examples(mapped, skip_invalid=True, report=report)] == ["a"]
    assert report.counts == {"missing_field": 1}

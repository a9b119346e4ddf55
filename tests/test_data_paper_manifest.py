"""configs/paper/tdro-tasks.json: the public tDRO reference's 25 sets, read against a data folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tdro_suite.cli import app
from tdro_suite.common.errors import DataError
from tdro_suite.data.mixture import read_mixture
from tdro_suite.data.tasks import load_tasks, read_manifest, training_tasks

ROOT = Path(__file__).resolve().parents[1]
PAPER_TASKS = ROOT / "configs" / "paper" / "tdro-tasks.json"
REFERENCE_WEIGHTS = Path(__file__).parent / "fixtures" / "reference_weights"
SYMMETRIC = {"AllNLI", "altlex", "quora_duplicates_triplets", "SimpleWiki",
             "stackexchange_duplicate_questions_title-body_title-body"}  # fmt: skip


def _write_task(path: Path, n: int = 2) -> None:
    rows = [
        {"query_id": str(i), "query": f"q{i}", "positive_passages": [{"docid": f"d{i}", "text": f"p{i}"}]}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _folder(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "retrieval"
    folder.mkdir()
    for name in names:
        _write_task(folder / f"{name}.jsonl")
    return folder


def _paper() -> dict:
    return json.loads(PAPER_TASKS.read_text(encoding="utf-8"))


def test_manifest_holds_the_reference_names_sizes_instructions_and_symmetry() -> None:
    paper = _paper()
    tasks = paper["tasks"]
    # the reference's own files list its 25 sets in this order with these sizes (uniform_sampling_s0.json
    # and curr_weights.json spell them alike)
    reference = read_mixture(REFERENCE_WEIGHTS / "curr_weights.json")
    assert tuple(t["name"] for t in tasks) == reference.names
    assert tuple(t["size"] for t in tasks) == reference.sizes
    assert all(t["path"] == f"{t['name']}.jsonl" for t in tasks)
    assert {t["name"] for t in tasks if t["symmetric"]} == SYMMETRIC
    by_name = {t["name"]: t for t in tasks}
    assert by_name["msmarco"]["instruction"] == (
        "Given a web search query, retrieve relevant passages that answer the query"
    )
    assert by_name["t2ranking"]["languages"] == ["zh"]
    for task in tasks:  # the first of the instructions the reference samples from
        assert task["instruction"] == paper["reference_instructions"][task["name"]][0]
    assert paper["reference_instructions"]["AllNLI"][1] == "Retrieve semantically similar text."


def test_loads_against_a_data_folder_with_instructions(tmp_path: Path) -> None:
    names = [t["name"] for t in _paper()["tasks"]]
    folder = _folder(tmp_path, names)
    tasks = load_tasks([folder], manifest=PAPER_TASKS)
    assert [t.name for t in tasks] == names
    assert all(Path(t.path).parent == folder.resolve() for t in tasks)
    quora = next(t for t in tasks if t.name == "quora_duplicates_triplets")
    assert quora.symmetric and quora.instruction.startswith("Given a question, retrieve questions")
    assert training_tasks([str(folder)], str(PAPER_TASKS)) == tasks == read_manifest(PAPER_TASKS, data_dir=folder)

    result = CliRunner().invoke(app, ["data", "stats", str(folder), "--tasks", str(PAPER_TASKS), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["tasks"] == 25 and stats["examples"] == 50
    assert {t["name"] for t in stats["per_task"] if t["symmetric"]} == SYMMETRIC


def test_a_folder_missing_some_files_names_every_one(tmp_path: Path) -> None:
    folder = _folder(tmp_path, ["msmarco", "AllNLI", "t2ranking"])
    with pytest.raises(DataError, match="22 of 25 data files are missing") as info:
        load_tasks([folder], manifest=PAPER_TASKS)
    assert "agnews.jsonl does not exist" in str(info.value) and "msmarco.jsonl" not in str(info.value)
    with pytest.raises(DataError, match="needs the data folder"):
        training_tasks([], PAPER_TASKS)
    with pytest.raises(DataError, match="the folder holding its files"):
        load_tasks([folder / "msmarco.jsonl"], manifest=PAPER_TASKS)


def test_a_folder_without_manifest_says_it_uses_no_instructions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _folder(tmp_path, ["msmarco", "AllNLI", "t2ranking"])
    with caplog.at_level(logging.WARNING, logger="tdro_suite.data.tasks"):
        tasks = load_tasks([folder])
    assert [t.name for t in tasks] == ["AllNLI", "msmarco", "t2ranking"]
    assert all(t.instruction == "" and not t.symmetric for t in tasks)
    assert "uses no instructions" in caplog.text or "use no instructions" in caplog.text
    assert "asymmetric" in caplog.text and str(folder) in caplog.text
    caplog.clear()
    (folder / "tasks.json").write_text(json.dumps([{"name": "msmarco", "path": "msmarco.jsonl"}]))
    with caplog.at_level(logging.WARNING, logger="tdro_suite.data.tasks"):
        assert [t.name for t in load_tasks([folder])] == ["msmarco"]
    assert caplog.text == ""

"""Sampling among a task's instructions (issue 14): the public tDRO code draws each example's instruction from
its task's list (`get_prompt`: `rng.choice`, once for the query and once more for a symmetric task's passages).
With `sample_instructions` both samplers do the same from their own seeded stream, so the examples, positives
and negatives drawn stay exactly those of a run without it; off, every example gets the task's instruction."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tdro_suite.data.tasks import load_tasks, read_manifest, write_manifest
from tdro_suite.data.types import Passage, TaskInfo, TrainExample
from tdro_suite.dro.batches import TaskData, draw_global_batch
from tdro_suite.modeling.prompts import TaskPrompts, passage_prompt, query_prompt
from tdro_suite.train.batching import global_text_groups
from tdro_suite.train.sampler import HomogeneousBatchSampler

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper" / "tdro-tasks.json"
A, B = "Given a premise, retrieve a hypothesis", "Retrieve semantically similar text."


def _examples(n: int) -> list[TrainExample]:
    return [TrainExample(f"q{i}", f"query {i}", (Passage(f"p{i}", f"positive {i}"),),
                         tuple(Passage(f"n{i}-{j}", f"negative {i} {j}") for j in range(4))) for i in range(n)]


def test_prompts_fixed_draw_and_symmetric_apart() -> None:
    fixed = TaskPrompts.of(A, [A, B], True, use_instructions=True, sample=False)
    assert fixed.fixed() == (query_prompt(A), passage_prompt(A, True))
    rng = np.random.default_rng(0)
    assert all(fixed.draw(rng) == fixed.fixed() for _ in range(10))
    assert rng.integers(1 << 30) == np.random.default_rng(0).integers(1 << 30)  # nothing taken from the stream
    assert TaskPrompts.of(A, [], False, use_instructions=True, sample=True).sample is False  # one instruction
    assert TaskPrompts.of(A, [A, B], False, use_instructions=False, sample=True).fixed() == ("", "")
    sampled = TaskPrompts.of(A, [A, B], True, use_instructions=True, sample=True)
    draws = [sampled.draw(rng) for _ in range(2000)]
    queries = Counter(q for q, _ in draws)
    assert set(queries) == {query_prompt(A), query_prompt(B)} and 900 < queries[query_prompt(A)] < 1100
    assert 900 < sum(q != p for q, p in draws) < 1100  # the passages' instruction is drawn apart from the query's
    asymmetric = TaskPrompts.of(A, [A, B], False, use_instructions=True, sample=True)
    assert {p for _, p in (asymmetric.draw(rng) for _ in range(50))} == {""}


def _strip(text: str) -> str:
    return text.split("\nQuery: ", 1)[-1]


def test_tdro_batches_draw_the_same_examples_with_sampled_instructions() -> None:
    info = TaskInfo("nli", "", instruction=A, instructions=[A, B], symmetric=True)
    other = TaskInfo("qa", "", instruction="Answer it")
    tasks = {s: [TaskData(t, _examples(40), TaskPrompts.of(t.instruction, t.instructions, t.symmetric,
                                                            use_instructions=True, sample=s))
                 for t in (info, other)] for s in (False, True)}
    kwargs = {"batch_size": 16, "hard_negatives": 2, "seed": 3}
    seen = set()
    for step in range(5):
        off, on = (draw_global_batch(tasks[s], step, **kwargs) for s in (False, True))
        assert [(i.task_id, _strip(i.query), tuple(map(_strip, i.passages))) for i in on] == [
            (i.task_id, _strip(i.query), tuple(map(_strip, i.passages))) for i in off]
        assert all(i.query.startswith(query_prompt(A)) for i in off if i.task_id == 0)
        seen |= {i.query.split("\n")[0] for i in on if i.task_id == 0}
        assert {i.query.split("\n")[0] for i in on if i.task_id == 1} == {"Instruct: Answer it"}
        assert draw_global_batch(tasks[True], step, **kwargs) == on  # a pure function of (seed, step)
    assert seen == {f"Instruct: {A}", f"Instruct: {B}"}


def test_finetune_groups_draw_the_same_examples_with_sampled_instructions() -> None:
    info = TaskInfo("nli", "", instruction=A, instructions=[A, B], symmetric=True)
    examples = _examples(30)
    sampler = HomogeneousBatchSampler([len(examples)], [1.0], 12, seed=1)
    seen = set()
    for _ in range(3):
        batch = sampler.next_batch()
        off = global_text_groups(batch, examples, info, 2, 5, True, False)
        on = global_text_groups(batch, examples, info, 2, 5, True, True)
        assert [(_strip(g.query), [_strip(p) for p in g.passages]) for g in on] == [
            (_strip(g.query), [_strip(p) for p in g.passages]) for g in off]
        assert {g.query.split("\n")[0] for g in off} == {f"Instruct: {A}"}
        seen |= {g.query.split("\n")[0] for g in on}
    assert seen == {f"Instruct: {A}", f"Instruct: {B}"}


def test_manifest_instructions_and_the_paper_manifest(tmp_path: Path) -> None:
    data = tmp_path / "nli.jsonl"
    data.write_text("")
    write_manifest(tmp_path / "tasks.json", [TaskInfo("nli", str(data), instruction=A, instructions=[A, B]),
                                             TaskInfo("plain", str(data))])
    written = json.loads((tmp_path / "tasks.json").read_text())
    assert written[0]["instructions"] == [A, B] and "instructions" not in written[1]
    assert read_manifest(tmp_path / "tasks.json")[0].instructions == [A, B]
    (tmp_path / "bad.json").write_text(json.dumps([{"name": "x", "path": "nli.jsonl", "instructions": [1]}]))
    with pytest.raises(Exception, match="field 'instructions' must be a list of strings"):
        load_tasks([tmp_path / "bad.json"])
    paper = json.loads(PAPER.read_text())
    for task in paper["tasks"]:
        alternatives = paper["reference_instructions"][task["name"]]
        assert task.get("instructions", [task["instruction"]]) == alternatives
    assert sum("instructions" in t for t in paper["tasks"]) == 12

"""Task manifests and mixture files: the helpers the optimize and finetune stages build on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tdro_suite.common.errors import DataError
from tdro_suite.data.mixture import MIXTURE_FORMAT, Mixture, read_mixture, write_mixture
from tdro_suite.data.tasks import load_task_examples, load_tasks, read_manifest, write_manifest
from tdro_suite.data.types import TaskInfo


def _task_file(path: Path, n: int) -> Path:
    rows = [
        {"query_id": str(i), "query": f"q{i}", "positive_passages": [{"docid": str(i), "text": f"p{i}"}]}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_manifest_round_trip_and_relative_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    a = TaskInfo(name="a", path=str(_task_file(data / "a.jsonl", 3)), languages=["en"], size=3, symmetric=True)
    b = TaskInfo(name="b", path=str(_task_file(data / "b.jsonl", 2)), instruction="Find it", size=2)
    write_manifest(data / "tasks.json", [a, b])
    stored = json.loads((data / "tasks.json").read_text())
    assert stored[0]["path"] == "a.jsonl"
    for source in (data, data / "tasks.json"):
        tasks = load_tasks([source])
        assert [t.name for t in tasks] == ["a", "b"]
        assert tasks[0].symmetric and tasks[0].languages == ["en"]
        assert Path(tasks[1].path) == (data / "b.jsonl").resolve()
    assert [e.query for e in load_task_examples(tasks[1])] == ["q0", "q1"]
    assert len(load_task_examples(tasks[0], limit=2)) == 2


def test_single_files_and_plain_folders(tmp_path: Path) -> None:
    _task_file(tmp_path / "x.jsonl", 1)
    tasks = load_tasks([tmp_path / "x.jsonl"])
    assert tasks[0].name == "x" and tasks[0].instruction == ""
    assert [t.name for t in load_tasks([tmp_path])] == ["x"]


def test_manifest_errors(tmp_path: Path) -> None:
    manifest = tmp_path / "tasks.json"
    manifest.write_text(json.dumps([{"name": "a", "path": "missing.jsonl"}]))
    with pytest.raises(DataError, match=r"task #1 \('a'\): field 'path'.*does not exist"):
        load_tasks([manifest])
    _task_file(tmp_path / "a.jsonl", 1)
    manifest.write_text(json.dumps([{"name": "a", "path": "a.jsonl", "symmetric": "yes"}]))
    with pytest.raises(DataError, match="field 'symmetric' must be bool"):
        read_manifest(manifest)
    manifest.write_text(json.dumps([{"name": "a", "path": "a.jsonl", "langs": ["en"]}]))
    with pytest.raises(DataError, match="unknown field"):
        read_manifest(manifest)
    manifest.write_text(json.dumps([{"name": "a", "path": "a.jsonl"}, {"name": "a", "path": "a.jsonl"}]))
    with pytest.raises(DataError, match="appears twice"):
        load_tasks([manifest])
    with pytest.raises(DataError, match="no such file"):
        load_tasks([tmp_path / "nothing"])


def test_mixture_round_trip_writes_both_layouts(tmp_path: Path) -> None:
    mix = Mixture(("a", "b", "c"), (2.0, 1.0, 1.0), (10, 20, 30))
    assert mix.weights == (0.5, 0.25, 0.25)
    path = tmp_path / "weights.json"
    write_mixture(path, mix, method="tdro", step=7)
    data = json.loads(path.read_text())
    assert data["format"] == MIXTURE_FORMAT and data["step"] == 7
    assert data["domain_ids"] == {"a": 0, "b": 1, "c": 2} and data["size"] == {"a": 10, "b": 20, "c": 30}
    assert data["domain_weights"] == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert data["epoch"] == pytest.approx({"a": 0.5 * 60 / 10, "b": 0.25 * 60 / 20, "c": 0.25 * 60 / 30})
    assert data["tasks"][0] == {"name": "a", "weight": 0.5, "size": 10}
    assert read_mixture(path) == mix
    del data["tasks"], data["format"]  # what the reference's scripts read: the same mixture
    path.write_text(json.dumps(data))
    assert read_mixture(path) == mix
    assert not list(tmp_path.glob(".*tmp"))


REFERENCE_WEIGHTS = Path(__file__).parent / "fixtures" / "reference_weights"


def test_reads_the_reference_published_weights_and_reproduces_its_top70() -> None:
    """Copies of the reference's config/robust_weights/{curr,top70}_weights.json (tdro-llm/tdro): the
    top-70% selection of its current weights is its published top-70 file, task for task."""
    curr = read_mixture(REFERENCE_WEIGHTS / "curr_weights.json")
    published = read_mixture(REFERENCE_WEIGHTS / "top70_weights.json")
    assert len(curr.names) == 25 and curr.names[0] == "agnews" and curr.names[-1] == "yahoo_answers_title_answer"
    assert curr.as_dict()["miracl"] == pytest.approx(0.13141760230064392, rel=1e-6)  # sums to 1 already
    assert sum(curr.sizes) == 11_067_280 and dict(zip(curr.names, curr.sizes, strict=True))["msmarco"] == 502854
    top = curr.top_percent(70)
    assert len(top.names) == 17  # ⌊25·70/100⌋
    assert set(top.names) == set(published.names)
    assert top.as_dict() == pytest.approx(published.as_dict())  # uniform 1/17
    by_weight = sorted(top.names, key=lambda n: -curr.weight_of(n))
    assert tuple(by_weight) == published.names  # its file lists the selection by falling weight
    sizes = dict(zip(published.names, published.sizes, strict=True))
    assert dict(zip(top.names, top.sizes, strict=True)) == sizes
    for mixture, name in ((top, "top70_weights"), (curr, "curr_weights")):  # its epoch: w·Σsize/size
        raw = json.loads((REFERENCE_WEIGHTS / f"{name}.json").read_text())
        assert mixture.reference_json()["epoch"] == pytest.approx(raw["epoch"], rel=1e-6)


def test_reads_reference_layout(tmp_path: Path) -> None:
    path = tmp_path / "ref.json"
    path.write_text(json.dumps({"domain_ids": ["x", "y"], "domain_weights": [0.3, 0.7], "size": [5, 6]}))
    mix = read_mixture(path)
    assert mix.names == ("x", "y") and mix.sizes == (5, 6)
    assert mix.weights == pytest.approx((0.3, 0.7))


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("{oops", "not valid JSON"),
        ("[]", "holds a JSON object"),
        ('{"foo": 1}', "not a mixture file"),
        ('{"tasks": [{"name": "a"}]}', r"tasks\[0\]: field 'weight' is missing"),
        ('{"tasks": [{"name": "a", "weight": -1}]}', "finite number"),
        ('{"domain_ids": ["a", "b"], "domain_weights": [1]}', "differ in length"),
        ('{"domain_ids": ["a"], "domain_weights": ["x"]}', r"domain_weights\[0\]"),
        ('{"domain_ids": {"a": 0, "b": 1}, "domain_weights": {"a": 1}}', "missing b"),
        ('{"domain_ids": {"a": 0, "b": 0}, "domain_weights": {"a": 1, "b": 1}}', "each once"),
        ('{"domain_ids": {"a": 0}, "domain_weights": {"a": "x"}}', r"domain_weights\.a"),
        ('{"domain_ids": {"a": 0}, "domain_weights": {"a": 1}, "size": {"a": -1}}', r"size\.a"),
        ('{"domain_ids": {"a": 0}, "domain_weights": [1]}', "object keyed by task name"),
        ('{"tasks": [{"name": "a", "weight": 0}]}', "sum to 0"),
    ],
)
def test_mixture_errors(tmp_path: Path, content: str, pattern: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(DataError, match=pattern) as info:
        read_mixture(path)
    assert str(path) in str(info.value)


def test_uniform_top_percent_and_unknown_tasks() -> None:
    tasks = [TaskInfo(name=n, path="", size=s) for n, s in zip("abcdefghij", range(10), strict=True)]
    uni = Mixture.uniform(tasks)
    assert uni.weights == pytest.approx([0.1] * 10) and uni.sizes[3] == 3
    mix = Mixture(tuple("abcdefghij"), (1, 9, 3, 8, 2, 7, 4, 6, 5, 0.5), tuple(range(10)))
    top = mix.top_percent(70)
    assert top.names == ("b", "c", "d", "f", "g", "h", "i")  # the 7 largest, original order
    assert top.weights == pytest.approx([1 / 7] * 7)
    assert mix.top_percent(1).names == ("b",)
    with pytest.raises(DataError):
        mix.top_percent(0)
    with pytest.raises(DataError, match="'j' not found in the training set"):
        mix.validate_against(tasks[:9])
    assert mix.weight_of("nothing") == 0.0


def test_hf_task_through_datasets(tmp_path: Path) -> None:
    path = _task_file(tmp_path / "local.jsonl", 3)
    tasks = load_tasks([f"hf:{path}"])
    assert tasks[0].name == "local" and tasks[0].path == f"hf:{path}"
    assert [e.query for e in load_task_examples(tasks[0])] == ["q0", "q1", "q2"]
    write_manifest(tmp_path / "tasks.json", [TaskInfo(name="remote", path=f"hf:{path}@train", languages=["en"])])
    assert json.loads((tmp_path / "tasks.json").read_text())[0]["path"] == f"hf:{path}@train"
    from_manifest = load_tasks([tmp_path / "tasks.json"])[0]
    assert len(load_task_examples(from_manifest)) == 3
    with pytest.raises(DataError, match=r"not in the local Hugging Face cache.*huggingface-cli download"):
        load_task_examples(load_tasks(["hf:no-such-owner/no-such-dataset-xyz@train"])[0])

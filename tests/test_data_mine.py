"""`tdro-suite data mine`: rank window, positives and duplicates skipped, counts, BM25, CLI, resume, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tdro_suite.cli import app
from tdro_suite.common.errors import ConfigError, DataError
from tdro_suite.data.mine import MineConfig, pick_negatives, run_mine, task_pool
from tdro_suite.data.reader import iter_examples
from tdro_suite.data.text import normalize_text
from tdro_suite.data.types import Passage, TrainExample
from tdro_suite.data.writer import write_examples

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ["apple", "river", "engine", "violin", "desert", "planet", "garden", "coffee", "winter", "pencil",
         "castle", "mirror", "forest", "rocket", "harbor", "candle", "meadow", "island", "thunder", "lantern"]


def _word_task(n: int = 14) -> list[TrainExample]:
    """n queries; positive i+1 of query i repeats as a negative elsewhere, with its text re-punctuated (a
    normalised duplicate under another docid), so positives' and duplicates' skipping is exercised."""
    examples = []
    for i in range(n):
        a, b = WORDS[i % len(WORDS)], WORDS[(i + 7) % len(WORDS)]
        near = WORDS[(i + 1) % len(WORDS)], WORDS[(i + 8) % len(WORDS)]
        examples.append(TrainExample(
            query_id=f"q{i}",
            query=f"where is the {a} near the {b}",
            positives=(Passage(f"p{i}", f"the {a} lies beside the {b}"),),
            negatives=(
                Passage(f"n{i}a", f"a {b} without any {WORDS[(i + 3) % len(WORDS)]}"),
                Passage(f"n{i}b", f"The {near[0]} lies beside the {near[1]}!"),  # = positive of query i+1
                Passage(f"n{i}c", f"{WORDS[(i + 5) % len(WORDS)]} and {WORDS[(i + 11) % len(WORDS)]}"),
            ),
        ))
    return examples


def _write(path: Path, examples: list[TrainExample]) -> Path:
    write_examples(path, examples)
    return path


def _config(task: Path, out: Path, model: Path | None, **kw: object) -> MineConfig:
    values = {"data": [str(task)], "out": str(out), "device": "cpu", "dtype": "float32", **kw}
    if model is not None:
        values["model"] = str(model)
    return MineConfig(**values)


# ------------------------------------------------------------------ selection rule


def test_pick_negatives_window_exclusions_duplicates_and_sampling() -> None:
    pool = [Passage(f"d{i}", f"text {i}") for i in range(8)] + [Passage("d8", "Text 3!"), Passage("d9", "TEXT 5")]
    norm = [normalize_text(p.full_text()) for p in pool]
    ranked = [9, 0, 8, 3, 5, 1, 2, 4, 6, 7]
    draws = []

    def rng() -> np.random.Generator:
        draws.append(1)
        return np.random.default_rng(0)

    # window [1, 7) holds 0, 8, 3, 5, 1, 2: d1 is excluded by id, 8 and 3 by the text "text 3"; 5 shares
    # its text with 9, which is outside the window, so it stays
    got = pick_negatives(ranked, (1, 7), 10, {"d1"}, {"text 3"}, pool, norm.__getitem__, rng)
    assert got == [0, 5, 2] and not draws  # fewer than k: all kept, in rank order, no draw
    # a duplicate text at a worse rank is skipped: 9 ("text 5") at rank 0 shadows 5 at rank 4
    assert pick_negatives(ranked, (0, 5), 10, set(), set(), pool, norm.__getitem__, rng) == [9, 0, 8]
    # more than k: k distinct ones drawn from the window, kept in rank order, reproducibly
    a = pick_negatives(ranked, (2, 10), 3, set(), set(), pool, norm.__getitem__, rng)
    b = pick_negatives(ranked, (2, 10), 3, set(), set(), pool, norm.__getitem__, rng)
    assert a == b and len(a) == 3 and set(a) <= {8, 5, 1, 2, 4, 6, 7}  # 3 repeats 8's text
    assert a == sorted(a, key=ranked.index) and len(draws) == 2
    assert pick_negatives([-1, -1, 4], (0, 3), 2, set(), set(), pool, norm.__getitem__, rng) == [4]


def test_config_checks_the_rank_window() -> None:
    with pytest.raises(ValueError, match="past --depth 100"):
        MineConfig(out="x.jsonl", ranks="10:200")
    with pytest.raises(ValueError, match="fewer than the 16 negatives"):
        MineConfig(out="x.jsonl", ranks="90:100")
    with pytest.raises(ValueError, match="A:B"):
        MineConfig(out="x.jsonl", ranks="10-100")
    with pytest.raises(ValueError, match="A must be below B"):
        MineConfig(out="x.jsonl", ranks="5:3", negatives=1)
    assert MineConfig(out="x.jsonl").window == (2, 100)  # the reference's depth [2, 100) and top 100


# ------------------------------------------------------------------ dense mining


def _window_scores(model_dir: Path, examples: list[TrainExample], pool: list[Passage]) -> np.ndarray:
    from tdro_suite.modeling import Encoder

    encoder = Encoder.from_pretrained(model_dir, device="cpu")
    q = encoder.encode_queries([e.query for e in examples])
    p = encoder.encode_passages([d.full_text() for d in pool])
    return q @ p.T


def test_dense_mining_picks_from_the_window_never_a_positive_or_a_duplicate(tiny_encoder_dir, tmp_path) -> None:
    examples = _word_task()
    task = _write(tmp_path / "words.jsonl", examples)
    report = run_mine(_config(task, tmp_path / "out.jsonl", tiny_encoder_dir, ranks="3:15", depth=15, negatives=4),
                      show_progress=False)
    assert report is not None and report.pool == len(task_pool(examples)) == 14 * 4
    mined = list(iter_examples(tmp_path / "out.jsonl"))
    assert [(e.query_id, e.query, e.positives) for e in mined] == [(e.query_id, e.query, e.positives) for e in examples]
    pool = task_pool(examples)
    row_of = {p.docid: j for j, p in enumerate(pool)}
    scores = _window_scores(tiny_encoder_dir, examples, pool)
    for i, example in enumerate(mined):
        order = np.argsort(-scores[i], kind="stable")
        high, low = scores[i, order[3]], scores[i, order[14]]  # the scores at ranks 3 and 14 bound the window
        texts = [normalize_text(n.full_text()) for n in example.negatives]
        positive_texts = {normalize_text(p.full_text()) for p in example.positives}
        assert len(texts) == len(set(texts)) == 4
        assert not set(texts) & positive_texts
        assert not {n.docid for n in example.negatives} & {p.docid for p in example.positives}
        for negative in example.negatives:
            assert pool[row_of[negative.docid]] == negative
            assert low - 1e-5 <= scores[i, row_of[negative.docid]] <= high + 1e-5
    assert report.counts == [4] * 14 and report.fewer_than_k == 0


def test_fewer_than_k_and_zero_are_counted(tiny_encoder_dir, tmp_path) -> None:
    """Ranks 0:10 over a 10-passage pool: each query's count is fixed by its exclusions, whatever the ranking."""
    p = [Passage(f"P{i}", f"{WORDS[i]} {WORDS[i + 10]}") for i in range(8)]
    p8, p9 = Passage("P8", f"{WORDS[0].upper()}, {WORDS[10]}!"), Passage("P9", f"{WORDS[5]}  {WORDS[15]}.")
    examples = [
        TrainExample("a", "first", (p[0],), (p[1], p[2])),  # skips P0, P8 (text); P5/P9 count once: 7
        TrainExample("b", "second", (p[3], p[4]), (p[5], p8)),  # skips P3, P4; P0/P8, P5/P9 once each: 6
        TrainExample("c", "third", (p[6],), (p[7], p9)),  # skips P6; 7 distinct of the other 9
        TrainExample("d", "fourth", tuple(p), ()),  # all but P8, P9, which repeat positives' texts: none
    ]
    task = _write(tmp_path / "small.jsonl", examples)
    report = run_mine(_config(task, tmp_path / "out.jsonl", tiny_encoder_dir, ranks="0:10", depth=10, negatives=7),
                      show_progress=False)
    assert report is not None and report.pool == 10
    assert report.counts == [7, 6, 7, 0]
    summary = report.to_dict()
    assert summary["fewer_than_k"] == 2 and summary["zero"] == 1 and summary["queries"] == 4
    assert summary["negatives_per_query"] == {"mean": 5.0, "min": 0, "max": 7}
    assert [len(e.negatives) for e in iter_examples(tmp_path / "out.jsonl")] == [7, 6, 7, 0]


def test_a_corpus_is_the_pool_and_its_copies_of_a_positive_are_skipped(tiny_encoder_dir, tmp_path) -> None:
    import gzip

    example = _word_task(1)[0]
    corpus = tmp_path / "corpus.jsonl.gz"
    docs = [{"_id": f"c{i}", "title": "t", "text": w} for i, w in enumerate(WORDS[10:14])]
    docs += [{"_id": "p0", "text": "another text under the positive's id"},
             {"_id": "copy", "title": "", "text": example.positives[0].text.upper() + "."}]
    corpus.write_bytes(gzip.compress("".join(json.dumps(d) + "\n" for d in docs).encode()))
    task = _write(tmp_path / "one.jsonl", [example])
    report = run_mine(_config(task, tmp_path / "out.jsonl", tiny_encoder_dir, corpus=str(corpus), ranks="0:6",
                              depth=6, negatives=6), show_progress=False)
    assert report is not None and report.pool == 6 and report.counts == [4]
    (mined,) = iter_examples(tmp_path / "out.jsonl")
    assert {n.docid for n in mined.negatives} == {"c0", "c1", "c2", "c3"}
    assert {n.title for n in mined.negatives} == {"t"}


def test_keep_existing_appends_and_never_repeats_a_kept_negative(tiny_encoder_dir, tmp_path) -> None:
    examples = _word_task()
    task = _write(tmp_path / "words.jsonl", examples)
    run_mine(_config(task, tmp_path / "out.jsonl", tiny_encoder_dir, ranks="0:20", depth=20, negatives=3,
                     keep_existing=True), show_progress=False)
    for before, after in zip(examples, iter_examples(tmp_path / "out.jsonl"), strict=True):
        assert after.negatives[:3] == before.negatives and len(after.negatives) == 6
        texts = [normalize_text(n.full_text()) for n in after.negatives]
        assert len(set(texts)) == 6


def test_a_model_that_reads_instructions_gets_the_task_instruction_on_both_sides_of_a_symmetric_task(
    tiny_encoder_dir, tmp_path
) -> None:
    """As training prompts them (`prompts.passage_prompt`): the query template on queries and, for a symmetric
    task, on the passages too; a model without tdro_instructions.json gets neither (the reference's choice)."""
    import shutil

    from tdro_suite.modeling import Encoder
    from tdro_suite.modeling.prompts import InstructionFormat

    model = tmp_path / "instructed"
    shutil.copytree(tiny_encoder_dir, model)
    InstructionFormat().save(model)
    folder = tmp_path / "data"
    _write(folder / "words.jsonl", _word_task(6))
    instruction = "Retrieve a sentence that says the same"
    (folder / "tasks.json").write_text(json.dumps(
        [{"name": "words", "path": "words.jsonl", "instruction": instruction, "symmetric": True}]
    ))
    work = tmp_path / "work"
    run_mine(_config(folder, tmp_path / "out.jsonl", model, ranks="0:8", depth=8, negatives=2, work_dir=str(work),
                     keep_work=True), show_progress=False)
    assert json.loads((work / "parts" / "encoding.json").read_text())["instruction"] == instruction
    encoder = Encoder.from_pretrained(model, device="cpu")
    texts = [p.full_text() for p in task_pool(_word_task(6))]
    prompted = encoder.encode(texts, prompt=f"Instruct: {instruction}\nQuery: ")
    assert np.allclose(np.load(work / "pool" / "shard-00000.npy"), prompted, atol=1e-5)


def test_a_pool_too_small_is_a_clear_error(tiny_encoder_dir, tmp_path) -> None:
    task = _write(tmp_path / "t.jsonl", _word_task(2))
    with pytest.raises(DataError, match=r"pool \(the task: 8 passages\) is too small .* at least 18"):
        run_mine(_config(task, tmp_path / "o.jsonl", tiny_encoder_dir), show_progress=False)


# ------------------------------------------------------------------ BM25


def test_bm25_mining_takes_lexical_matches_only(tmp_path) -> None:
    pytest.importorskip("bm25s")
    examples = [*_word_task(), TrainExample("none", "zzz qqq", (Passage("pz", "nothing shared"),))]
    task = _write(tmp_path / "words.jsonl", examples)
    report = run_mine(_config(task, tmp_path / "out.jsonl", None, method="bm25", ranks="1:30", depth=30, negatives=3),
                      show_progress=False)
    assert report is not None and report.method == "bm25"
    mined = list(iter_examples(tmp_path / "out.jsonl"))
    for example in mined[:-1]:
        query_words = set(example.query.split()) - {"the"}
        assert len(example.negatives) == 3
        for negative in example.negatives:
            assert set(normalize_text(negative.text).split()) & (query_words | {"the"})
            assert normalize_text(negative.full_text()) not in {normalize_text(p.text) for p in example.positives}
    assert mined[-1].negatives == () and report.zero == 1 and report.fewer_than_k == 1  # nothing shares a term


# ------------------------------------------------------------------ CLI


def test_cli_writes_a_task_that_validate_accepts(tiny_encoder_dir, tmp_path) -> None:
    folder = tmp_path / "data"
    _write(folder / "words.jsonl", _word_task())
    _write(folder / "other.jsonl", _word_task(3))
    (folder / "tasks.json").write_text(json.dumps([
        {"name": "words", "path": "words.jsonl"}, {"name": "other", "path": "other.jsonl"},
    ]))
    out = tmp_path / "mined.jsonl.gz"
    args = ["data", "mine", str(folder), "-o", str(out), "-m", str(tiny_encoder_dir), "--negatives", "3",
            "--ranks", "1:12", "--depth", "12", "--device", "cpu", "--dtype", "float32"]
    ambiguous = CliRunner().invoke(app, args)
    assert isinstance(ambiguous.exception, ConfigError) and "--task-name" in str(ambiguous.exception)
    result = CliRunner().invoke(app, [*args, "--task-name", "words", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["task"] == "words" and report["queries"] == 14 and report["negatives"] == 3
    assert report["fewer_than_k"] == 0 and report["ranks"] == [1, 12]
    assert not (tmp_path / ".mined.jsonl.gz.mining").exists()  # the work folder goes once the output is written
    checked = CliRunner().invoke(app, ["data", "validate", str(out), "--json"])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["per_task"][0]["negatives_per_query"] == 3.0
    table = CliRunner().invoke(app, [*args, "--task-name", "words"])
    assert table.exit_code == 0 and "queries with fewer than 3" in table.stderr


def test_cli_names_a_bad_line(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    _write(bad, _word_task(2))
    bad.write_text(bad.read_text() + '{"query_id": "x", "query": "y", "positive_passages": []}\n')
    result = CliRunner().invoke(app, ["data", "mine", str(bad), "-o", str(tmp_path / "o.jsonl"), "--method", "bm25"])
    assert isinstance(result.exception, DataError)
    assert f"{bad}:3: field 'positive_passages'" in str(result.exception)


# ------------------------------------------------------------------ resume and torchrun


def test_rerun_skips_finished_shards_and_parts(tiny_encoder_dir, tmp_path) -> None:
    task = _write(tmp_path / "words.jsonl", _word_task())
    out, work = tmp_path / "out.jsonl", tmp_path / "work"
    cfg = _config(task, out, tiny_encoder_dir, ranks="2:20", depth=20, negatives=4, shard_size=4,
                  work_dir=str(work), keep_work=True)
    run_mine(cfg, show_progress=False)
    first = out.read_bytes()
    files = sorted([*work.glob("pool/shard-*.npy"), *work.glob("parts/part-*.npy")])
    assert len(files) == 14 + 4  # 56 passages and 14 queries, 4 per shard / part
    stamps = {f: f.stat().st_mtime_ns for f in files}
    killed = work / "parts" / "part-00002.npy"
    killed.unlink()  # as if the run died before this part was saved
    out.unlink()
    run_mine(cfg, show_progress=False)
    assert out.read_bytes() == first and killed.is_file()
    assert {f: f.stat().st_mtime_ns for f in files if f != killed} == {f: t for f, t in stamps.items() if f != killed}
    run_mine(cfg.model_copy(update={"seed": 7}), show_progress=False)  # other settings: parts redone, shards kept
    assert all(f.stat().st_mtime_ns == stamps[f] for f in files if "shard-" in f.name)
    assert all(f.stat().st_mtime_ns != stamps[f] for f in files if "part-" in f.name and f != killed)


@pytest.mark.slow
def test_two_gloo_processes_write_the_bytes_of_one(tiny_encoder_dir, tmp_path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    task = _write(tmp_path / "words.jsonl", _word_task())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    common = ["data", "mine", str(task), "-m", str(tiny_encoder_dir), "--ranks", "2:20", "--depth", "20",
              "--negatives", "4", "--shard-size", "4", "--keep-work", "--device", "cpu", "--dtype", "float32"]
    runs = {
        "single": [sys.executable, "-m", "tdro_suite.cli"],
        "multi": [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "tdro_suite.cli"],
    }
    for name, launch in runs.items():
        proc = subprocess.run([*launch, *common, "-o", str(tmp_path / f"{name}.jsonl.gz")], env=env, timeout=300,
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert (tmp_path / "multi.jsonl.gz").read_bytes() == (tmp_path / "single.jsonl.gz").read_bytes()
    parts = sorted(p.name for p in (tmp_path / ".multi.jsonl.gz.mining" / "parts").glob("part-*.npy"))
    assert parts == [f"part-{i:05d}.npy" for i in range(4)]  # parts 0, 2 by rank 0 and 1, 3 by rank 1

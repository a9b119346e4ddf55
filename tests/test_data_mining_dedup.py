"""Hard-negative mining, SimHash decontamination, text helpers and byte-reproducible writing."""

from __future__ import annotations

import gzip
from pathlib import Path

from tdro_suite.data.dedup import find_contamination, simhash64
from tdro_suite.data.negatives import mine_hard_negatives
from tdro_suite.data.reader import iter_examples
from tdro_suite.data.text import normalize_text, tokenize, truncate
from tdro_suite.data.types import Passage, TrainExample
from tdro_suite.data.writer import write_examples

POOL = [
    Passage("d0", "the cat sat on the mat"),
    Passage("d1", "a cat and a dog on a mat"),
    Passage("d2", "The cat sat on the mat!"),  # same text as d0 once normalised
    Passage("d3", "dogs bark at night"),
    Passage("d4", "cats chase mice"),
    Passage("d5", "the mat is red"),
    Passage("d6", "stock markets fell"),
    Passage("d7", "rain in spain"),
]


def test_mining_skips_top_rank_and_positives() -> None:
    negs, stats = mine_hard_negatives(["cat mat"], [{"d0"}], POOL, n_negatives=3, skip_top=1, seed=1)
    chosen = {POOL[i].docid for i in negs[0]}
    assert len(negs[0]) == 3 == len(chosen)
    assert not chosen & {"d0", "d2"}  # the positive and its duplicate text never become negatives
    assert stats.bm25_negatives + stats.random_negatives == 3
    # the top rank is skipped even when it is not a known positive (it may be an unlabelled one)
    unskipped, _ = mine_hard_negatives(["cat mat"], [{"d4"}], POOL, n_negatives=3, skip_top=0)
    skipped, _ = mine_hard_negatives(["cat mat"], [{"d4"}], POOL, n_negatives=3, skip_top=1)
    assert POOL[unskipped[0][0]].docid in {"d0", "d2"}
    assert unskipped[0][0] not in skipped[0]
    assert unskipped[0][1:] == skipped[0][: len(unskipped[0]) - 1]


def test_mining_fills_randomly_but_reproducibly_and_respects_eligible() -> None:
    eligible = [True] * 7 + [False]
    a, stats = mine_hard_negatives(["zzz"], [{"d6"}], POOL, n_negatives=5, seed=3, eligible=eligible)
    b, _ = mine_hard_negatives(["zzz"], [{"d6"}], POOL, n_negatives=5, seed=3, eligible=eligible)
    assert a == b and stats.random_negatives == 5
    assert 6 not in a[0] and 7 not in a[0]
    c, stats = mine_hard_negatives(["zzz"], [{"d4"}], POOL, n_negatives=2, fallback_texts=["red mat and a cat"])
    assert stats.random_negatives == 0 and 4 not in c[0]


def test_simhash_and_contamination() -> None:
    assert simhash64("Who wrote Hamlet?") == simhash64("who wrote hamlet")
    assert bin(simhash64("who wrote hamlet") ^ simhash64("stock markets fell sharply")).count("1") > 10
    hits = find_contamination(
        ["Who wrote Hamlet?", "what is the capital of france", "completely different question here"],
        ["who wrote hamlet", "what is the capital of frances"],
    )
    kinds = {h.train_index: h.kind for h in hits}
    assert kinds[0] == "exact" and kinds[1] == "near" and 2 not in kinds


def test_text_helpers() -> None:
    assert normalize_text("  Héllo,   WORLD! ") == "héllo world"
    assert tokenize("熱力学 ok") == ["熱力", "力学", "ok"]
    assert truncate("w " * 150, max_words=100).endswith("…")
    assert len(truncate("字" * 500)) == 201


def test_gzip_output_is_byte_reproducible(tmp_path: Path) -> None:
    examples = [TrainExample("q", "question?", (Passage("p", "yes"),), (Passage("n", "no"),))]
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "sub" / "a.jsonl.gz"
    write_examples(a, examples)
    write_examples(b, examples)
    assert a.read_bytes() == b.read_bytes()
    assert gzip.decompress(a.read_bytes()).startswith(b'{"query_id":"q"')
    assert list(iter_examples(a)) == examples

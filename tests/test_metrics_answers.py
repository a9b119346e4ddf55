"""MKQA answer matching: DPR-style normalisation and token-sequence containment."""

from __future__ import annotations

import pytest

from tdro_suite.evaluation.answers import answer_recall, normalize_answer


def test_normalisation_follows_dpr_squad():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffel tower"
    assert normalize_answer("An apple, a day") == "apple day"
    assert normalize_answer("Ｂｅｒｌｉｎ。") == "berlin"  # NFKC width folding, CJK punctuation


@pytest.mark.parametrize(
    ("passage", "answers", "expected"),
    [
        ("Paris is the capital of France.", ["paris"], True),
        ("It was built in 1889 by Gustave Eiffel.", ["Gustave Eiffel"], True),
        ("Comparison with Parisian style.", ["Paris"], False),  # whole tokens only
        ("Barack Obama was president.", ["Obama Barack"], False),  # order matters
        ("The answer is the Beatles.", ["Beatles", "nope"], True),  # any alias
        ("Nothing here.", [""], False),  # an empty answer never matches
    ],
)
def test_a_passage_holds_an_answer(passage, answers, expected):
    assert answer_recall([answers], [[passage]], (1,))["recall@1"] == float(expected)


def test_answer_recall_counts_first_hit_within_k():
    answers = [["paris"], ["1889"], ["mars"]]
    retrieved = [["Paris, France", "x"], ["no", "no", "Built in 1889."], ["no"]]
    out = answer_recall(answers, retrieved, (1, 3))
    assert out["recall@1"] == pytest.approx(1 / 3) and out["recall@3"] == pytest.approx(2 / 3)
    assert out["per_query"] == [1, 3, None]

"""MKQA-style answer matching: a passage is a hit when it contains an answer after DPR-style normalisation.

DPR (Karpukhin et al., 2020, `has_answer` with match type "string") lowercases, removes
punctuation and the articles a/an/the, collapses whitespace, tokenises, and looks for the
answer's tokens as a contiguous run of the passage's tokens. Unicode text is NFKC-folded first
and every Unicode punctuation character counts, so non-English answers match the same way.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def _strip_punctuation(text: str) -> str:
    return "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (DPR/SQuAD normalisation)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _strip_punctuation(text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def contains_answer(passage_tokens: Sequence[str], answer_tokens: Sequence[str]) -> bool:
    """True when `answer_tokens` appear contiguously in `passage_tokens`."""
    n = len(answer_tokens)
    if n == 0:
        return False
    first = answer_tokens[0]
    return any(
        passage_tokens[i] == first and list(passage_tokens[i : i + n]) == list(answer_tokens)
        for i in range(len(passage_tokens) - n + 1)
    )


_DPR_TOKEN = None


def dpr_tokens(text: str) -> list[str]:
    """DPR's `has_answer` tokens (match type "string"), which BGE-M3's MKQA evaluation uses: NFD, then
    DPR's SimpleTokenizer (runs of letters, digits and marks, or any single other visible character, so
    punctuation stays as tokens), lowercased. Articles stay. `regex` comes with transformers."""
    global _DPR_TOKEN
    if _DPR_TOKEN is None:
        import regex

        _DPR_TOKEN = regex.compile(r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])", flags=regex.IGNORECASE | regex.UNICODE)
    return [m.group().lower() for m in _DPR_TOKEN.finditer(unicodedata.normalize("NFD", text))]


MATCHERS = {"normalized": tokens, "dpr": dpr_tokens}


def answer_recall(
    answers: Sequence[Sequence[str]], retrieved: Sequence[Sequence[str]], k_values: Iterable[int],
    match: str = "normalized",
) -> dict[str, object]:
    """MKQA Recall@k: the share of questions with an answer in any of their top-k passages.

    `answers[i]` are the accepted strings of question i, `retrieved[i]` its passages, best first.
    `match`: "normalized" (this module's normalisation; the bundled stand-in) or "dpr" (DPR's tokens,
    the public MKQA protocol).
    Returns {"recall@k": mean, ..., "per_query": [first hit rank (1-based) or None, ...]}.
    """
    if len(answers) != len(retrieved):
        raise ValueError(f"{len(answers)} answer lists for {len(retrieved)} rankings")
    tokenize = MATCHERS[match]
    cache: dict[str, list[str]] = {}  # a passage retrieved for many questions is normalised once

    def passage_tokens(text: str) -> list[str]:
        if text not in cache:
            cache[text] = tokenize(text)
        return cache[text]

    first_hits: list[int | None] = []
    for accepted, passages in zip(answers, retrieved, strict=True):
        wanted = [t for t in (tokenize(a) for a in accepted) if t]
        hit = next(
            (i + 1 for i, text in enumerate(passages)
             if any(contains_answer(passage_tokens(text), answer) for answer in wanted)),
            None,
        )
        first_hits.append(hit)
    out: dict[str, object] = {}
    for k in sorted(set(k_values)):
        out[f"recall@{k}"] = (
            sum(1 for h in first_hits if h is not None and h <= k) / len(first_hits) if first_hits else 0.0
        )
    out["per_query"] = first_hits
    return out

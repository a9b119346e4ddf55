"""Language-neutral text helpers shared by mining, deduplication and the data builder.

Scripts written without spaces (Chinese, Japanese, Korean hangul runs, Thai) have no useful
whitespace words, so they are tokenised into overlapping character bigrams; everything else into
lower-cased word tokens. This is what lets one BM25 and one SimHash serve every language.
"""

from __future__ import annotations

import re
import unicodedata

_PUNCT_OR_SPACE = re.compile(r"[\W_]+", re.UNICODE)
_WORD_OR_CJK = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u0e00-\u0e7f]+|\w+", re.UNICODE
)
_CJK_RUN = re.compile(r"^[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u0e00-\u0e7f]+$")


def normalize_text(text: str) -> str:
    """NFKC, case-folded, punctuation removed, whitespace collapsed: equality here means "same text"."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _PUNCT_OR_SPACE.sub(" ", folded).strip()


def tokenize(text: str) -> list[str]:
    """Words for space-separated scripts, character bigrams for runs of CJK/Thai characters."""
    tokens: list[str] = []
    for match in _WORD_OR_CJK.finditer(unicodedata.normalize("NFKC", text).casefold()):
        run = match.group(0)
        if _CJK_RUN.match(run):
            tokens.extend(run[i : i + 2] for i in range(max(len(run) - 1, 1)))
        else:
            tokens.append(run)
    return tokens


def is_unspaced(text: str) -> bool:
    """True when most letters belong to scripts written without spaces."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    unspaced = sum(1 for c in letters if _CJK_RUN.match(c))
    return unspaced * 2 > len(letters)


def truncate(text: str, max_words: int = 100, max_unspaced_chars: int = 200) -> str:
    """Shorten to about `max_words` words (or characters for unspaced scripts), keeping line breaks."""
    text = text.strip()
    if is_unspaced(text):
        return text if len(text) <= max_unspaced_chars else text[:max_unspaced_chars].rstrip() + "…"
    for count, match in enumerate(re.finditer(r"\S+", text), start=1):
        if count > max_words:
            return text[: match.start()].rstrip() + " …"
    return text

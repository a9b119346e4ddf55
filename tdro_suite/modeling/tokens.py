"""Tokenizers: every text ends with exactly one EOS (last-token pooling), and whether two tokenise alike.

Decoder LLMs embed a text as the state of its final token, which must be the same special token
for every text. Many tokenizer files do not append EOS, so we install a post-processor that does
(keeping whatever the tokenizer already puts around the text, e.g. a BOS). Because it lives in the
tokenizer itself, truncation keeps room for it and the saved tokenizer behaves the same inside
sentence-transformers.
"""

from __future__ import annotations

import json
from typing import Any


def ensure_eos_appended(tokenizer: Any) -> None:
    """Install an EOS-appending post-processor unless the tokenizer already ends texts with EOS."""
    eos, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    if eos is None or eos_id is None:
        raise ValueError("last-token pooling needs a tokenizer with an EOS token; this one has none")
    if _ends_with_single_eos(tokenizer):
        return
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("last-token pooling needs a fast (Rust) tokenizer to append EOS; this one is slow")
    from tokenizers.processors import TemplateProcessing

    with_specials = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    start = _find(with_specials, plain)
    prefix = with_specials[:start] if start >= 0 else []
    suffix = with_specials[start + len(plain) :] if start >= 0 else []
    pre = tokenizer.convert_ids_to_tokens(prefix)
    post = tokenizer.convert_ids_to_tokens(suffix)
    specials = {t: tokenizer.convert_tokens_to_ids(t) for t in [*pre, *post, eos]}
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=[*pre, "$A", *post, eos],
        pair=[*pre, "$A", *post, eos, "$B:1", f"{eos}:1"],
        special_tokens=list(specials.items()),
    )
    if not _ends_with_single_eos(tokenizer):
        raise ValueError("could not make the tokenizer append EOS; use mean or cls pooling for this model")


def same_tokenization(a: Any, b: Any) -> bool:
    """Whether two tokenizers give every text the same ids, padding and mask, so one's output serves both.

    Decided on the loaded tokenizers, not their files: a model fine-tuned from another and saved by
    another transformers version writes other files for the same tokenisation (and our EOS
    post-processor lives only in the loaded one). Fast tokenizers compare their whole Rust state
    (normaliser, pre-tokeniser, vocabulary, post-processor, added tokens) and the settings a call
    applies on the Python side (padding and truncation side, pad id, which tensors it returns); slow
    tokenizers are never taken as equal (other than to themselves).
    """
    if a is b:
        return True
    key_a = _tokenization_key(a)
    return key_a is not None and key_a == _tokenization_key(b)


def _tokenization_key(tokenizer: Any) -> str | None:
    if not getattr(tokenizer, "is_fast", False):
        return None
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    for per_call in ("truncation", "padding"):  # set by each call from the arguments below and the call's own
        state.pop(per_call, None)
    settings = [
        type(tokenizer).__name__, tokenizer.padding_side, tokenizer.truncation_side, tokenizer.pad_token_id,
        tokenizer.pad_token_type_id, list(tokenizer.model_input_names),
    ]
    return json.dumps([state, settings], sort_keys=True)


def _ends_with_single_eos(tokenizer: Any) -> bool:
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[-1] == tokenizer.eos_token_id and ids.count(tokenizer.eos_token_id) == 1


def _find(haystack: list[int], needle: list[int]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if haystack[i : i + len(needle)] == needle:
            return i
    return -1

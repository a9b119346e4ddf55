"""Length buckets: the split is chosen only when it saves pad tokens, and it changes neither the
embeddings nor the gradients of one padded pass (encoder with right padding, decoder with both)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tdro_suite.modeling import Encoder
from tdro_suite.modeling.length_buckets import padded_tokens, plan_buckets, restore_order, trim_to_rows

# Short and long texts mixed: one padded pass wastes most of its slots on padding.
TEXTS = [
    "a dog",
    "the quick brown fox jumps over the lazy dog " * 4,
    "love",
    "retrieval augmented generation needs a dense retriever and a good index of passages",
    "el gato",
    "def add(a, b): return a + b",
    "a man is eating food and a woman is reading a book " * 3,
    "what is love",
] * 4


def mask_of(lengths: list[int], width: int) -> torch.Tensor:
    return torch.tensor([[1] * n + [0] * (width - n) for n in lengths])


def test_plan_keeps_uniform_batches_whole_and_splits_mixed_ones() -> None:
    assert plan_buckets(mask_of([10] * 32, 12), min_rows=8) is None
    assert plan_buckets(mask_of([5, 90] * 16, 96), min_rows=32) is None  # buckets would be too small
    buckets = plan_buckets(mask_of([5, 90] * 16, 96), min_rows=8)
    assert buckets is not None and len(buckets) == 2  # 4 or 8 buckets save nothing more than 2
    assert sorted(torch.cat(buckets).tolist()) == list(range(32))
    assert {len(b) for b in buckets} == {16}
    lengths = torch.tensor([5, 90] * 16).sort().values
    assert padded_tokens(lengths, 2) == 16 * 5 + 16 * 90 < padded_tokens(lengths, 1) == 32 * 90


def test_trim_and_restore_are_exact_inverses() -> None:
    features = {"input_ids": torch.arange(24).view(6, 4), "attention_mask": mask_of([1, 4, 2, 1, 3, 2], 4)}
    buckets = plan_buckets(features["attention_mask"], min_rows=1)
    assert buckets is not None
    parts = [trim_to_rows(features, rows) for rows in buckets]
    assert all(part["attention_mask"][:, -1].any() for part in parts)  # no all-padding column left
    restored = restore_order([p["input_ids"][:, :1].float() for p in parts], buckets)
    assert restored.squeeze(1).tolist() == features["input_ids"][:, 0].float().tolist()


def single_pass(encoder: Encoder, features: dict[str, torch.Tensor]) -> torch.Tensor:
    inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    return F.normalize(encoder._embed(inputs), dim=-1)


def embeddings_and_grads(encoder: Encoder, features: dict, bucketed: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    encoder.zero_grad()
    emb = encoder(features) if bucketed else single_pass(encoder, features)
    weights = torch.linspace(-1, 1, emb.numel()).view_as(emb)
    (emb * weights).sum().backward()
    return emb.detach(), [p.grad.clone() for p in encoder.parameters() if p.grad is not None]


@pytest.fixture(params=["encoder", "decoder-right", "decoder-left"])
def encoder(request, tiny_encoder_dir, tiny_decoder_dir, tmp_path_factory) -> Encoder:
    if request.param == "encoder":
        folder = tiny_encoder_dir
    elif request.param == "decoder-right":
        folder = tiny_decoder_dir
    else:
        from tiny_models import build_tiny_decoder

        folder = build_tiny_decoder(tmp_path_factory.mktemp("tiny-left"), padding_side="left")
    return Encoder.from_pretrained(folder, device="cpu")  # eval mode: no dropout, so both passes are comparable


def test_bucketed_forward_equals_one_padded_pass(encoder: Encoder, one_torch_thread) -> None:
    features = encoder.tokenize(TEXTS, max_length=64)
    assert plan_buckets(features["attention_mask"], min_rows=8) is not None  # the case under test is split
    emb_one, grads_one = embeddings_and_grads(encoder, features, bucketed=False)
    emb_buckets, grads_buckets = embeddings_and_grads(encoder, features, bucketed=True)
    torch.testing.assert_close(emb_buckets, emb_one, atol=1e-5, rtol=1e-4)
    assert len(grads_one) == len(grads_buckets) > 0
    for g_buckets, g_one in zip(grads_buckets, grads_one, strict=True):
        torch.testing.assert_close(g_buckets, g_one, atol=1e-5, rtol=1e-4)

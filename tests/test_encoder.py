"""The Encoder: pooling under both paddings, EOS handling, real MiniLM similarity, export round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tdro_suite.modeling import Encoder
from tdro_suite.modeling.pooling import pool


def test_lasttoken_pool_picks_last_real_token_for_left_and_right_padding() -> None:
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(hidden, right, "lasttoken").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, left, "lasttoken").flatten().tolist() == [3.0, 7.0]


def test_mean_and_cls_pool() -> None:
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").item() == pytest.approx(2.0)
    assert pool(hidden, mask, "cls").item() == 1.0


def test_decoder_gets_lasttoken_pooling_and_exactly_one_eos(tiny_decoder_dir) -> None:
    enc = Encoder.from_pretrained(tiny_decoder_dir, device="cpu")
    assert enc.pooling == "lasttoken"
    eos = enc.tokenizer.eos_token_id
    feats = enc.tokenize(["a man is eating food", "dog"])
    for ids, mask in zip(feats["input_ids"].tolist(), feats["attention_mask"].tolist(), strict=True):
        real = [i for i, m in zip(ids, mask, strict=True) if m]
        assert real[-1] == eos
        assert real.count(eos) == 1
    # truncation keeps the EOS as the final token
    long = enc.tokenize(["the quick brown fox " * 50], max_length=16)["input_ids"][0].tolist()
    assert len(long) == 16 and long[-1] == eos and long.count(eos) == 1


def test_left_and_right_padding_give_the_same_embeddings(tiny_decoder_dir) -> None:
    texts = ["a man is eating food", "dog", "retrieval augmented generation needs a dense retriever"]
    enc = Encoder.from_pretrained(tiny_decoder_dir, device="cpu")
    enc.tokenizer.padding_side = "right"
    right = enc.encode(texts, batch_size=3)
    enc.tokenizer.padding_side = "left"
    left = enc.encode(texts, batch_size=3)
    one_by_one = np.concatenate([enc.encode([t]) for t in texts])
    np.testing.assert_allclose(right, left, atol=1e-5)
    np.testing.assert_allclose(right, one_by_one, atol=1e-5)


def test_encode_restores_input_order_and_normalises(tiny_encoder_dir) -> None:
    enc = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")
    assert enc.pooling == "mean"
    texts = ["short", "a much much longer text than the others here", "mid length text"]
    batched = enc.encode(texts, batch_size=2)
    single = np.concatenate([enc.encode([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("which", ["encoder", "decoder"])
def test_encode_pass_is_encode_in_one_padded_pass(which, tiny_encoder_dir, tiny_decoder_dir) -> None:
    """The server's one-pass path gives `encode`'s vectors, in input order, and refuses train mode."""
    enc = Encoder.from_pretrained(tiny_encoder_dir if which == "encoder" else tiny_decoder_dir, device="cpu")
    texts = ["short", "a much much longer text than the others here, with more words", "mid length text"]
    np.testing.assert_allclose(enc.encode_pass(texts), enc.encode(texts, batch_size=1), atol=1e-5)
    enc.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        enc.encode_pass(texts)


def test_minilm_cosine_matches_reference(minilm) -> None:
    v = minilm.encode(["A man is eating food.", "A man is eating a piece of bread."])
    assert float(v[0] @ v[1]) == pytest.approx(0.755, abs=2e-3)


def test_minilm_export_loads_in_sentence_transformers(minilm, tmp_path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["A man is eating food.", "The cat sleeps on the mat.", "Dense retrieval with FAISS"]
    minilm.prompts["query"] = "query: "
    try:
        ours = minilm.encode(texts, prompt_name="query")
        minilm.save(tmp_path / "export")
    finally:
        minilm.prompts["query"] = ""
    st = SentenceTransformer(str(tmp_path / "export"), device="cpu")
    theirs = st.encode(texts, prompt_name="query", convert_to_numpy=True, normalize_embeddings=False)
    assert np.abs(ours - theirs).max() <= 1e-5


def test_lora_merged_decoder_round_trips(tiny_decoder_dir, tmp_path) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["a man is eating food", "dog", "el perro come la comida"]
    enc = Encoder.from_pretrained(tiny_decoder_dir, device="cpu")
    enc.add_lora(rank=4, alpha=8, dropout=0.0)
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():  # move the adapters off their zero init so merging changes the weights
        for n, p in enc.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    before = enc.encode(texts)
    enc.save(tmp_path / "adapter", merge=False)
    from_adapter = Encoder.from_pretrained(tmp_path / "adapter", device="cpu").encode(texts)
    np.testing.assert_allclose(before, from_adapter, atol=1e-5)
    enc.save(tmp_path / "merged")
    merged = Encoder.from_pretrained(tmp_path / "merged", device="cpu")
    np.testing.assert_allclose(before, merged.encode(texts), atol=1e-5)
    st = SentenceTransformer(str(tmp_path / "merged"), device="cpu")
    assert np.abs(before - st.encode(texts, convert_to_numpy=True)).max() <= 1e-5


def test_default_max_length_respects_the_position_table(tiny_encoder_dir) -> None:
    enc = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")
    assert enc.max_length == 128  # the tiny BERT has 128 positions; its tokenizer allows 512
    assert enc.encode(["word " * 400]).shape == (1, enc.dimension)


def test_decoder_forwards_build_no_key_value_cache(tiny_decoder_dir, monkeypatch) -> None:
    """Encoding, training forwards and no-grad forwards (reference, GradCache pass 1) create no KV cache."""
    import transformers.cache_utils as cache_utils

    created: list[str] = []
    original = cache_utils.DynamicCache.__init__

    def counting_init(self, *args, **kwargs):
        created.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(cache_utils.DynamicCache, "__init__", counting_init)
    enc = Encoder.from_pretrained(tiny_decoder_dir, device="cpu")
    assert enc.backbone.config.use_cache  # the config asks for a cache: the encoder must refuse it per call
    enc.encode(["a query about apples", "a passage"])
    enc.train()
    enc(enc.tokenize(["training forward"], max_length=16)).sum().backward()
    with torch.no_grad():
        enc(enc.tokenize(["no-grad forward"], max_length=16))
    assert created == []
    enc.backbone(**enc.tokenize(["the check has teeth"], max_length=16))  # transformers' default does build one
    assert created

"""Tiny randomly initialised models for fast unit tests: they exercise the code, not quality."""

from __future__ import annotations

from pathlib import Path

_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a man is eating food and a woman is reading a book",
    "retrieval augmented generation needs a dense retriever",
    "def add(a, b): return a + b",
    "el perro come la comida y el gato duerme",
    "Instruct: Given a question, retrieve the answer\nQuery: what is love",
] * 20


def build_tiny_tokenizer():
    """A small byte-level BPE tokenizer with <s>, </s>, <pad>, <unk>; it adds no specials itself."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def build_tiny_decoder(folder: Path, *, seed: int = 0, padding_side: str = "right") -> Path:
    """A 2-layer Llama (hidden 32) saved with its tokenizer: last-token pooling is auto-selected."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tiny_tokenizer()
    tokenizer.padding_side = padding_side
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_encoder(folder: Path, *, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 32) with the MiniLM tokenizer: mean pooling is auto-selected."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tdro_suite.modeling.resolve import resolve_model

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

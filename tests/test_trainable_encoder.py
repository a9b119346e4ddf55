"""The Encoder a stage trains: every trainable parameter gets a gradient, so DDP runs without
`find_unused_parameters` (the 2-process tests in test_distributed.py and test_dro_distributed.py train
the tiny BERT under DDP with it off: an unused parameter there fails the second step)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tdro_suite.modeling.encoder import Encoder
from tdro_suite.runtime.build import build_trainable_encoder
from tdro_suite.runtime.config import ModelConfig
from tdro_suite.runtime.module import EncoderModule

TEXTS = ["a dog", "the quick brown fox jumps over the lazy dog", "el gato", "def add(a, b): return a + b"]


def without_gradient(encoder: Encoder) -> list[str]:
    """Trainable parameters that one forward + backward of queries and passages leaves without a gradient."""
    features = encoder.tokenize(TEXTS, max_length=16)
    q, p = EncoderModule(encoder)(features, features)
    (q * p).sum().backward()
    return [name for name, param in encoder.named_parameters() if param.requires_grad and param.grad is None]


@pytest.mark.parametrize("lora", [False, True])
def test_bert_pooler_is_frozen_and_every_other_parameter_trains(tiny_encoder_dir: Path, lora: bool) -> None:
    cfg = ModelConfig(model=str(tiny_encoder_dir), lora=lora)
    plain = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")
    if lora:
        plain.add_lora(cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout)
    plain.train()
    unused = without_gradient(plain)
    assert unused and all(".pooler." in name for name in unused)  # what find_unused_parameters was for
    encoder = build_trainable_encoder(cfg, torch.device("cpu"), bf16=False)
    assert not without_gradient(encoder)
    assert all(not p.requires_grad for p in encoder.base_model.pooler.parameters())
    assert sum(p.requires_grad for p in encoder.parameters()) == sum(
        p.requires_grad for name, p in plain.named_parameters() if name not in unused
    )


def test_a_decoder_has_nothing_to_freeze(tiny_decoder_dir: Path) -> None:
    encoder = Encoder.from_pretrained(tiny_decoder_dir, device="cpu")
    assert encoder.freeze_unread_modules() == []
    encoder.train()
    assert not without_gradient(encoder)


def test_ddp_does_not_search_for_unused_parameters() -> None:
    from tdro_suite.runtime.accelerator import make_accelerator

    assert make_accelerator("fp32").ddp_handler.find_unused_parameters is False
    assert make_accelerator("fp32", find_unused_parameters=True).ddp_handler.find_unused_parameters is True
